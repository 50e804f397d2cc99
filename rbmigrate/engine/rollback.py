"""Rollback: remove what a run inserted, restore what it updated, put back what it deleted.

Every change a run makes is logged in rbmigrate_changes in the same transaction as the
change (the old row for updates and deletes). Rollback replays that log backwards in one
transaction, with updated_at restored exactly, and refuses — saying which rows — when a
later run or a writer changed those rows since.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg import sql

from rbmigrate.errors import ConfigError, RbmigrateError

TABLES = ("memory_items", "reasoning_traces")


class RollbackRefused(RbmigrateError):
    default_title = "Rollback refused"


@dataclass
class RollbackResult:
    deleted: dict[str, int]
    restored: dict[str, int]
    reinserted: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        return {"deleted": self.deleted, "restored": self.restored, "reinserted": self.reinserted}


def _columns(conn: Any, schema: str, table: str) -> list[str]:
    rows = conn.execute(
        "SELECT a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        (schema, table),
    ).fetchall()
    return [r[0] for r in rows]


def _conflicts(conn: Any, schema: str, run_id: str) -> list[str]:
    """Rows this run wrote that are no longer as it left them."""
    s = sql.Identifier(schema)
    problems: list[str] = []
    for table in TABLES:
        rows = conn.execute(
            sql.SQL(
                "SELECT c.row_id, c.action FROM {s}.rbmigrate_changes c"
                " LEFT JOIN {s}.{t} r ON r.id = c.row_id"
                " WHERE c.run_id = %s AND c.table_name = %s AND c.action IN ('insert', 'update')"
                " AND (r.id IS NULL OR r.source_hash IS DISTINCT FROM c.new_hash) LIMIT 5"
            ).format(s=s, t=sql.Identifier(table)),
            (run_id, table),
        ).fetchall()
        problems += [
            f"{table} {r[0]} ({r[1]}d by this run) was changed or removed since" for r in rows
        ]
        later = conn.execute(
            sql.SQL(
                "SELECT c.row_id, l.run_id FROM {s}.rbmigrate_changes c"
                " JOIN {s}.rbmigrate_changes l ON l.table_name = c.table_name AND l.row_id = c.row_id"
                " JOIN {s}.rbmigrate_runs lr ON lr.run_id = l.run_id"
                " JOIN {s}.rbmigrate_runs cr ON cr.run_id = c.run_id"
                " WHERE c.run_id = %s AND c.table_name = %s AND l.run_id <> c.run_id"
                " AND lr.started_at > cr.started_at AND lr.status <> 'rolled_back' LIMIT 5"
            ).format(s=s),
            (run_id, table),
        ).fetchall()
        problems += [f"{table} {r[0]} was touched again by the later run {r[1]}" for r in later]
    orphans = conn.execute(
        sql.SQL(
            "SELECT m.id FROM {s}.rbmigrate_changes c JOIN {s}.memory_items m ON m.trace_id = c.row_id"
            " WHERE c.run_id = %s AND c.table_name = 'reasoning_traces' AND c.action = 'insert'"
            " AND NOT EXISTS (SELECT 1 FROM {s}.rbmigrate_changes x WHERE x.run_id = c.run_id"
            "                 AND x.table_name = 'memory_items' AND x.row_id = m.id AND x.action = 'insert') LIMIT 5"
        ).format(s=s),
        (run_id,),
    ).fetchall()
    problems += [
        f"memory_items {r[0]} was added since to a trace this run created" for r in orphans
    ]
    return problems


def rollback(conn: Any, schema: str, run_id: str) -> RollbackResult:
    s = sql.Identifier(schema)
    row = conn.execute(
        sql.SQL("SELECT status FROM {}.rbmigrate_runs WHERE run_id = %s").format(s), (run_id,)
    ).fetchone()
    if row is None:
        raise ConfigError(
            f"run {run_id} does not exist in this target.",
            hint="the run id is in the report and in rbmigrate_runs.",
        )
    if row[0] == "rolled_back":
        raise RollbackRefused(f"run {run_id} was rolled back already.")
    problems = _conflicts(conn, schema, run_id)
    if problems:
        raise RollbackRefused(
            f"run {run_id} cannot be rolled back: " + "; ".join(problems) + ".",
            hint="roll back the later runs first (newest first), or restore from a backup.",
        )
    result = RollbackResult({}, {}, {})
    with conn.transaction():
        conn.execute("SELECT set_config('rbmigrate.restoring', 'on', true)")
        for table in TABLES:  # memories first: they point at traces
            t = sql.Identifier(table)
            cols = _columns(conn, schema, table)
            col_list = sql.SQL(", ").join(map(sql.Identifier, cols))
            src_list = sql.SQL(", ").join(sql.SQL("r.{}").format(sql.Identifier(c)) for c in cols)
            cur = conn.execute(
                sql.SQL(
                    "DELETE FROM {s}.{t} x USING {s}.rbmigrate_changes c WHERE c.run_id = %s"
                    " AND c.table_name = %s AND c.action = 'insert' AND x.id = c.row_id"
                ).format(s=s, t=t),
                (run_id, table),
            )
            result.deleted[table] = cur.rowcount
            cur = conn.execute(
                sql.SQL(
                    "UPDATE {s}.{t} x SET ({cols}) = ({src}) FROM {s}.rbmigrate_changes c,"
                    " jsonb_populate_record(NULL::{s}.{t}, c.old_row) r"
                    " WHERE c.run_id = %s AND c.table_name = %s AND c.action = 'update' AND x.id = c.row_id"
                ).format(s=s, t=t, cols=col_list, src=src_list),
                (run_id, table),
            )
            result.restored[table] = cur.rowcount
            cur = conn.execute(
                sql.SQL(
                    "INSERT INTO {s}.{t} ({cols}) SELECT {src} FROM {s}.rbmigrate_changes c,"
                    " jsonb_populate_record(NULL::{s}.{t}, c.old_row) r"
                    " WHERE c.run_id = %s AND c.table_name = %s AND c.action = 'delete'"
                ).format(s=s, t=t, cols=col_list, src=src_list),
                (run_id, table),
            )
            result.reinserted[table] = cur.rowcount
        conn.execute(
            sql.SQL(
                "UPDATE {}.rbmigrate_runs SET status = 'rolled_back', updated_at = now() WHERE run_id = %s"
            ).format(s),
            (run_id,),
        )
    return result
