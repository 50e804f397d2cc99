"""Defer the expensive indexes during an initial load and build them after the data.

Building an HNSW index over loaded rows is several times faster than maintaining it row by
row. The definitions are saved in the run's row in the same transaction as the DROP, so a
run killed at any point (even during the build) rebuilds exactly those indexes on resume.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from psycopg import sql
from psycopg.types.json import Jsonb

from rbmigrate.target.connection import connect

DEFERRED = ("idx_memories_embedding", "idx_traces_embedding", "idx_memories_tags")
BUILD_SETTINGS = {
    "maintenance_work_mem": "1GB",
    "max_parallel_maintenance_workers": "2",
    "statement_timeout": "0",
}


def defer_indexes(conn: Any, schema: str, run_id: str) -> list[dict[str, str]]:
    """Drop the deferred indexes that exist and record their definitions in the run row."""
    runs = sql.SQL("{}.rbmigrate_runs").format(sql.Identifier(schema))
    with conn.transaction():
        rows = conn.execute(
            "SELECT indexname, tablename, indexdef FROM pg_indexes WHERE schemaname = %s AND indexname = ANY(%s)",
            (schema, list(DEFERRED)),
        ).fetchall()
        saved = [{"name": r[0], "table": r[1], "definition": r[2]} for r in rows]
        for item in saved:
            conn.execute(
                sql.SQL("DROP INDEX IF EXISTS {}.{}").format(
                    sql.Identifier(schema), sql.Identifier(item["name"])
                )
            )
        conn.execute(
            sql.SQL("UPDATE {} SET deferred_indexes = %s WHERE run_id = %s").format(runs),
            (Jsonb(saved), run_id),
        )
    return saved


def pending_indexes(conn: Any, schema: str, run_id: str) -> list[dict[str, str]]:
    runs = sql.SQL("{}.rbmigrate_runs").format(sql.Identifier(schema))
    row = conn.execute(
        sql.SQL("SELECT deferred_indexes FROM {} WHERE run_id = %s").format(runs), (run_id,)
    ).fetchone()
    conn.commit()
    return list(row[0]) if row and row[0] else []


def _if_not_exists(definition: str) -> str:
    for head in ("CREATE UNIQUE INDEX ", "CREATE INDEX "):
        if definition.startswith(head) and "IF NOT EXISTS" not in definition:
            return head + "IF NOT EXISTS " + definition[len(head) :]
    return definition


def build_indexes(
    dsn: str,
    schema: str,
    run_id: str,
    progress: Callable[[str, int, int], None],
    tables: tuple[str, ...] | None = None,
) -> list[str]:
    """Build the run's pending indexes (of `tables`, or all) with generous settings,
    reporting tuples done/total."""
    conn = connect(dsn, autocommit=True, schema=schema)
    built: list[str] = []
    try:
        for key, value in BUILD_SETTINGS.items():
            conn.execute(sql.SQL("SET {} = {}").format(sql.Identifier(key), sql.Literal(value)))
        pid = conn.info.backend_pid
        pending = [
            p
            for p in pending_indexes(conn, schema, run_id)
            if tables is None or p["table"] in tables
        ]
        runs = sql.SQL("{}.rbmigrate_runs").format(sql.Identifier(schema))
        for item in pending:
            stop = threading.Event()
            watcher = threading.Thread(
                target=_watch, args=(dsn, schema, pid, item["name"], progress, stop), daemon=True
            )
            watcher.start()
            try:
                conn.execute(_if_not_exists(item["definition"]))
            finally:
                stop.set()
                watcher.join(5)
            remaining = [
                i for i in pending_indexes(conn, schema, run_id) if i["name"] != item["name"]
            ]
            conn.execute(
                sql.SQL("UPDATE {} SET deferred_indexes = %s WHERE run_id = %s").format(runs),
                (Jsonb(remaining), run_id),
            )
            built.append(item["name"])
    finally:
        conn.close()
    return built


def _watch(
    dsn: str,
    schema: str,
    pid: int,
    name: str,
    progress: Callable[[str, int, int], None],
    stop: threading.Event,
) -> None:
    """Poll pg_stat_progress_create_index for the building backend."""
    try:
        conn = connect(dsn, autocommit=True, schema=schema, vector=False)
    except Exception:
        return
    try:
        while not stop.wait(0.5):
            row = conn.execute(
                "SELECT tuples_done, tuples_total, blocks_done, blocks_total FROM pg_stat_progress_create_index"
                " WHERE pid = %s",
                (pid,),
            ).fetchone()
            if row:
                done, total = (row[0], row[1]) if row[1] else (row[2], row[3])
                progress(name, int(done or 0), int(total or 0))
    except Exception:
        return
    finally:
        conn.close()
