"""Write batches into PostgreSQL: binary COPY into staging, one merge transaction each.

Each batch is: COPY traces and memories into temporary staging tables, then in the same
transaction record what the merge will change (for rollback), upsert traces and memories
(`ON CONFLICT ... DO UPDATE ... WHERE source_hash IS DISTINCT FROM ...`, so unchanged rows
are not touched), and move the run's checkpoint. A batch is committed whole or not at all.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import numpy as np
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from rbmigrate.errors import RunBusy
from rbmigrate.records.model import MemoryRow, TraceRow
from rbmigrate.target.connection import connect

UNRESOLVED_PARENT = "unresolved_parent_memory_id"
UNRESOLVED_TRACE_PARENT = "unresolved_parent_trace_id"

TRACE_COLUMNS = (
    "id",
    "task",
    "task_embedding",
    "trajectory",
    "outcome",
    "metadata",
    "parent_trace_id",
    "timestamp",
    "num_memories",
    "workspace_id",
    "source_id",
    "source_hash",
)
TRACE_TYPES = (
    "uuid",
    "text",
    "vector",
    "jsonb",
    "text",
    "jsonb",
    "uuid",
    "timestamptz",
    "int4",
    "text",
    "text",
    "text",
)
MEMORY_COLUMNS = (
    "id",
    "trace_id",
    "title",
    "description",
    "content",
    "content_embedding",
    "error_context",
    "pattern_tags",
    "difficulty_level",
    "domain_category",
    "parent_ref",
    "evolution_stage",
    "workspace_id",
    "created_at",
    "source_id",
    "source_collection",
    "source_hash",
    "metadata",
)
MEMORY_TYPES = (
    "uuid",
    "uuid",
    "text",
    "text",
    "text",
    "vector",
    "jsonb",
    "text[]",
    "text",
    "text",
    "uuid",
    "int4",
    "text",
    "timestamptz",
    "text",
    "text",
    "text",
    "jsonb",
)

STAGING = """
CREATE TEMP TABLE IF NOT EXISTS rbm_stage_traces (
    id uuid, task text, task_embedding vector, trajectory jsonb, outcome text, metadata jsonb,
    parent_trace_id uuid, "timestamp" timestamptz, num_memories integer, workspace_id text,
    source_id text, source_hash text) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS rbm_stage_memories (
    id uuid, trace_id uuid, title text, description text, content text, content_embedding vector,
    error_context jsonb, pattern_tags text[], difficulty_level text, domain_category text,
    parent_ref uuid, evolution_stage integer, workspace_id text, created_at timestamptz,
    source_id text, source_collection text, source_hash text, metadata jsonb) ON COMMIT DELETE ROWS;
"""

LOG_TRACE_UPDATES = """
INSERT INTO {changes} (run_id, table_name, row_id, action, old_row, new_hash)
SELECT %(run)s, 'reasoning_traces', t.id, 'update', to_jsonb(t), s.source_hash
FROM {traces} t JOIN rbm_stage_traces s ON s.id = t.id
WHERE t.source_hash IS DISTINCT FROM s.source_hash
ON CONFLICT (run_id, table_name, row_id) DO NOTHING
"""

MERGE_TRACES = """
WITH src AS (
    SELECT s.*, (s.parent_trace_id IS NULL
                 OR EXISTS (SELECT 1 FROM {traces} p WHERE p.id = s.parent_trace_id)
                 OR EXISTS (SELECT 1 FROM rbm_stage_traces q WHERE q.id = s.parent_trace_id)) AS parent_ok
    FROM rbm_stage_traces s
), up AS (
    INSERT INTO {traces} AS t (id, task, task_embedding, trajectory, outcome, metadata, parent_trace_id,
                               "timestamp", num_memories, workspace_id, source_id, source_hash)
    SELECT id, task, task_embedding, trajectory, outcome,
           CASE WHEN parent_ok THEN metadata
                ELSE metadata || jsonb_build_object('unresolved_parent_trace_id', parent_trace_id::text) END,
           CASE WHEN parent_ok THEN parent_trace_id END,
           "timestamp", num_memories, workspace_id, source_id, source_hash
    FROM src
    ON CONFLICT (id) DO UPDATE SET
        task = excluded.task,
        task_embedding = CASE WHEN t.task IS NOT DISTINCT FROM excluded.task
                              THEN coalesce(excluded.task_embedding, t.task_embedding)
                              ELSE excluded.task_embedding END,
        trajectory = excluded.trajectory,
        outcome = excluded.outcome, metadata = excluded.metadata, parent_trace_id = excluded.parent_trace_id,
        "timestamp" = excluded."timestamp", num_memories = excluded.num_memories,
        workspace_id = excluded.workspace_id, source_id = excluded.source_id,
        source_hash = excluded.source_hash
    WHERE t.source_hash IS DISTINCT FROM excluded.source_hash
    RETURNING t.id, t.source_hash, (t.xmax = 0) AS inserted
), logged AS (
    INSERT INTO {changes} (run_id, table_name, row_id, action, new_hash)
    SELECT %(run)s, 'reasoning_traces', id, CASE WHEN inserted THEN 'insert' ELSE 'update' END, source_hash
    FROM up
    ON CONFLICT (run_id, table_name, row_id) DO UPDATE SET new_hash = excluded.new_hash
)
SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM up
"""

TAKEN_IDS = """
DELETE FROM rbm_stage_memories s USING {memories} m
WHERE m.id = s.id AND m.source_id IS NOT NULL
  AND (m.source_collection IS DISTINCT FROM s.source_collection OR m.source_id IS DISTINCT FROM s.source_id)
RETURNING s.source_id, m.source_collection, m.source_id
"""

LOG_MEMORY_UPDATES = """
INSERT INTO {changes} (run_id, table_name, row_id, action, old_row, new_hash)
SELECT %(run)s, 'memory_items', m.id, 'update', to_jsonb(m), s.source_hash
FROM {memories} m JOIN rbm_stage_memories s ON s.id = m.id
WHERE m.source_hash IS DISTINCT FROM s.source_hash
ON CONFLICT (run_id, table_name, row_id) DO NOTHING
"""

MERGE_MEMORIES = """
WITH src AS (
    SELECT s.*, (s.parent_ref IS NULL
                 OR EXISTS (SELECT 1 FROM {memories} p WHERE p.id = s.parent_ref)
                 OR EXISTS (SELECT 1 FROM rbm_stage_memories q WHERE q.id = s.parent_ref)) AS parent_ok
    FROM rbm_stage_memories s
), up AS (
    INSERT INTO {memories} AS m (id, trace_id, title, description, content, content_embedding,
        error_context, pattern_tags, difficulty_level, domain_category, parent_memory_id,
        evolution_stage, workspace_id, created_at, source_id, source_collection, source_hash, metadata)
    SELECT id, trace_id, title, description, content, content_embedding, error_context, pattern_tags,
           difficulty_level, domain_category, CASE WHEN parent_ok THEN parent_ref END,
           evolution_stage, workspace_id, created_at, source_id, source_collection, source_hash,
           CASE WHEN parent_ok THEN metadata
                ELSE metadata || jsonb_build_object('unresolved_parent_memory_id', parent_ref::text) END
    FROM src
    ON CONFLICT (id) DO UPDATE SET
        trace_id = excluded.trace_id, title = excluded.title, description = excluded.description,
        content = excluded.content, content_embedding = excluded.content_embedding,
        error_context = excluded.error_context, pattern_tags = excluded.pattern_tags,
        difficulty_level = excluded.difficulty_level, domain_category = excluded.domain_category,
        parent_memory_id = excluded.parent_memory_id, evolution_stage = excluded.evolution_stage,
        workspace_id = excluded.workspace_id, created_at = excluded.created_at,
        source_id = excluded.source_id, source_collection = excluded.source_collection,
        source_hash = excluded.source_hash, metadata = excluded.metadata
    WHERE m.source_hash IS DISTINCT FROM excluded.source_hash
    RETURNING m.id, m.source_hash, (m.xmax = 0) AS inserted
), logged AS (
    INSERT INTO {changes} (run_id, table_name, row_id, action, new_hash)
    SELECT %(run)s, 'memory_items', id, CASE WHEN inserted THEN 'insert' ELSE 'update' END, source_hash
    FROM up
    ON CONFLICT (run_id, table_name, row_id) DO UPDATE SET new_hash = excluded.new_hash
)
SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM up
"""

# The staged batch is small and the target may be huge: every join against the target must
# probe its primary key. Left to cost estimates, a growing table during an initial load (no
# statistics yet) gets a hash join over a sequential scan in every batch, which made the
# initial load quadratic (17 s of 40 at 100,000 records).
INDEX_DRIVEN = "SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off"

CHECKPOINT = """
INSERT INTO {checkpoints} (run_id, collection, position, batches, done, counts, updated_at)
VALUES (%(run)s, %(collection)s, %(position)s, %(batches)s, %(done)s, %(counts)s, now())
ON CONFLICT (run_id, collection) DO UPDATE SET position = excluded.position,
    batches = excluded.batches, done = excluded.done, counts = excluded.counts, updated_at = now()
"""


@dataclass
class MergeResult:
    memories_inserted: int = 0
    memories_updated: int = 0
    traces_inserted: int = 0
    traces_updated: int = 0
    taken: list[tuple[str, str | None, str | None]] | None = None


def _json(value: Any) -> Jsonb | None:
    return None if value is None else Jsonb(value)


def _vec(value: np.ndarray | None) -> np.ndarray | None:
    return None if value is None else np.asarray(value, dtype=np.float32)


def trace_tuple(row: TraceRow, embedding: np.ndarray | None) -> tuple[Any, ...]:
    return (
        row.id,
        row.task,
        _vec(embedding),
        Jsonb(row.trajectory),
        row.outcome,
        Jsonb(row.metadata),
        row.parent_trace_id,
        row.timestamp,
        row.num_memories,
        row.workspace_id,
        row.source_id,
        row.source_hash,
    )


def memory_tuple(row: MemoryRow) -> tuple[Any, ...]:
    return (
        row.id,
        row.trace_id,
        row.title,
        row.description,
        row.content,
        _vec(row.embedding),
        _json(row.error_context),
        row.pattern_tags,
        row.difficulty_level,
        row.domain_category,
        row.parent_ref,
        row.evolution_stage,
        row.workspace_id,
        row.created_at,
        row.source_id,
        row.source_collection,
        row.source_hash,
        Jsonb(row.metadata),
    )


class PostgresWriter:
    """One writing connection. Not thread-safe: the migration's main thread owns it."""

    def __init__(self, dsn: str, schema: str) -> None:
        self.dsn = dsn
        self.schema = schema
        self.conn = connect(dsn, schema=schema)
        self.conn.execute(STAGING)
        self.conn.commit()

    def t(self, name: str) -> sql.Composed:
        return sql.SQL("{}.{}").format(sql.Identifier(self.schema), sql.Identifier(name))

    def q(self, template: str) -> sql.Composed:
        return sql.SQL(template).format(
            traces=self.t("reasoning_traces"),
            memories=self.t("memory_items"),
            changes=self.t("rbmigrate_changes"),
            checkpoints=self.t("rbmigrate_checkpoints"),
            runs=self.t("rbmigrate_runs"),
        )

    def close(self) -> None:
        with contextlib.suppress(psycopg.Error):
            self.conn.close()

    def acquire(self, fingerprint: str, run_id: str) -> None:
        """Hold the migration of this source into this target for as long as this connection
        lives (a PostgreSQL advisory lock: a killed run frees it at once)."""
        from rbmigrate.engine.runs import try_lock

        if not try_lock(self.conn, fingerprint):
            raise RunBusy(
                "another rbmigrate run is migrating this source into this target right now.",
                hint="wait for it to finish, or stop it; then run again (it resumes).",
            )
        self.conn.commit()

    def written_ids(self, run_id: str, table: str = "memory_items") -> set[UUID]:
        """Rows of `table` the run inserted or updated: verify re-hashes their content."""
        rows = self.conn.execute(
            self.q(
                "SELECT row_id FROM {changes} WHERE run_id = %s AND table_name = %s"
                " AND action IN ('insert', 'update')"
            ),
            (run_id, table),
        ).fetchall()
        self.conn.commit()
        return {r[0] for r in rows}

    # --- runs ----------------------------------------------------------------------------
    def register_run(
        self,
        run_id: str,
        command: str,
        fingerprint: str,
        source: dict[str, Any],
        target: dict[str, Any],
        config: dict[str, Any],
        version: str,
    ) -> None:
        self.conn.execute(
            self.q(
                "INSERT INTO {runs} (run_id, command, status, source_fingerprint, source, target, config,"
                " rbmigrate_version) VALUES (%s, %s, 'running', %s, %s, %s, %s, %s)"
                " ON CONFLICT (run_id) DO UPDATE SET status = 'running', updated_at = now(), finished_at = NULL"
            ),
            (run_id, command, fingerprint, Jsonb(source), Jsonb(target), Jsonb(config), version),
        )
        self.conn.commit()

    def set_run(
        self,
        run_id: str,
        *,
        status: str | None = None,
        phase: str | None = None,
        counts: dict[str, Any] | None = None,
        finished: bool = False,
    ) -> None:
        self.conn.execute(
            self.q(
                "UPDATE {runs} SET status = coalesce(%s, status), phase = coalesce(%s, phase),"
                " counts = coalesce(%s, counts), updated_at = now(),"
                " finished_at = CASE WHEN %s THEN now() ELSE finished_at END WHERE run_id = %s"
            ),
            (status, phase, Jsonb(counts) if counts is not None else None, finished, run_id),
        )
        self.conn.commit()

    def checkpoints(self, run_id: str) -> dict[str, dict[str, Any]]:
        rows = self.conn.execute(
            self.q(
                "SELECT collection, position, batches, done, counts FROM {checkpoints} WHERE run_id = %s"
            ),
            (run_id,),
        ).fetchall()
        self.conn.commit()
        return {
            r[0]: {"position": r[1], "batches": r[2], "done": r[3], "counts": r[4]} for r in rows
        }

    # --- one batch -------------------------------------------------------------------------
    def write_batch(
        self,
        run_id: str,
        traces: Sequence[tuple[TraceRow, np.ndarray | None]],
        memories: Sequence[MemoryRow],
        finish: Callable[[MergeResult], dict[str, Any]],
    ) -> MergeResult:
        """COPY + merge + checkpoint in one transaction. `finish(result)` runs after the merge
        and before the commit (rows refused as taken ids reach rejects.jsonl first) and returns
        the checkpoint to store: collection, position, batches, done, counts."""
        result = MergeResult()
        conn = self.conn
        params = {"run": run_id}
        with conn.transaction():
            cur = conn.cursor()
            cur.execute(INDEX_DRIVEN)
            if traces:
                with cur.copy(
                    sql.SQL("COPY rbm_stage_traces ({}) FROM STDIN WITH (FORMAT BINARY)").format(
                        sql.SQL(", ").join(map(sql.Identifier, TRACE_COLUMNS))
                    )
                ) as copy:
                    copy.set_types(list(TRACE_TYPES))
                    for row, emb in traces:
                        copy.write_row(trace_tuple(row, emb))
                cur.execute(self.q(LOG_TRACE_UPDATES), params)
                got = cur.execute(self.q(MERGE_TRACES), params).fetchone()
                result.traces_inserted, result.traces_updated = (got[0], got[1]) if got else (0, 0)
            if memories:
                with cur.copy(
                    sql.SQL("COPY rbm_stage_memories ({}) FROM STDIN WITH (FORMAT BINARY)").format(
                        sql.SQL(", ").join(map(sql.Identifier, MEMORY_COLUMNS))
                    )
                ) as copy:
                    copy.set_types(list(MEMORY_TYPES))
                    for mem in memories:
                        copy.write_row(memory_tuple(mem))
                result.taken = [
                    (r[0], r[1], r[2]) for r in cur.execute(self.q(TAKEN_IDS)).fetchall()
                ]
                cur.execute(self.q(LOG_MEMORY_UPDATES), params)
                got = cur.execute(self.q(MERGE_MEMORIES), params).fetchone()
                result.memories_inserted, result.memories_updated = (
                    (got[0], got[1]) if got else (0, 0)
                )
            checkpoint = dict(finish(result))
            checkpoint["counts"] = Jsonb(checkpoint["counts"])
            cur.execute(self.q(CHECKPOINT), {"run": run_id, **checkpoint})
        return result

    def mark_done(self, run_id: str, collection: str, batches: int, counts: dict[str, Any]) -> None:
        with self.conn.transaction():
            self.conn.execute(
                self.q(CHECKPOINT),
                {
                    "run": run_id,
                    "collection": collection,
                    "position": 0,
                    "batches": batches,
                    "done": True,
                    "counts": Jsonb(counts),
                },
            )

    # --- after the batches ---------------------------------------------------------------------
    def resolve_parents(self, collections: list[str]) -> int:
        """Link children whose parent arrived later; return how many still have none."""
        with self.conn.transaction():
            self.conn.execute(
                self.q(
                    "UPDATE {memories} m SET parent_memory_id = (m.metadata->>'unresolved_parent_memory_id')::uuid,"
                    " metadata = m.metadata - 'unresolved_parent_memory_id'"
                    " WHERE m.metadata ? 'unresolved_parent_memory_id' AND m.source_collection = ANY(%s)"
                    " AND EXISTS (SELECT 1 FROM {memories} p"
                    "             WHERE p.id = (m.metadata->>'unresolved_parent_memory_id')::uuid)"
                ),
                (collections,),
            )
            self.conn.execute(
                self.q(
                    "UPDATE {traces} t SET parent_trace_id = (t.metadata->>'unresolved_parent_trace_id')::uuid,"
                    " metadata = t.metadata - 'unresolved_parent_trace_id'"
                    " WHERE t.metadata ? 'unresolved_parent_trace_id'"
                    " AND EXISTS (SELECT 1 FROM {traces} p WHERE p.id = (t.metadata->>'unresolved_parent_trace_id')::uuid)"
                )
            )
            row = self.conn.execute(
                self.q(
                    "SELECT count(*) FROM {memories} WHERE metadata ? 'unresolved_parent_memory_id'"
                    " AND source_collection = ANY(%s)"
                ),
                (collections,),
            ).fetchone()
        return int(row[0]) if row else 0

    def delete_missing(
        self, run_id: str, collections: list[str], source_ids: Iterable[tuple[str, str]]
    ) -> int:
        """Delete target rows of these collections whose source record is gone (logged for rollback)."""
        with self.conn.transaction():
            self.conn.execute(
                "CREATE TEMP TABLE rbm_source_ids (collection text, source_id text) ON COMMIT DROP"
            )
            with self.conn.cursor().copy("COPY rbm_source_ids FROM STDIN") as copy:
                for pair in source_ids:
                    copy.write_row(pair)
            self.conn.execute("CREATE INDEX ON rbm_source_ids (collection, source_id)")
            gone = (
                "m.source_collection = ANY(%(c)s) AND m.source_id IS NOT NULL AND NOT EXISTS "
                "(SELECT 1 FROM rbm_source_ids s WHERE s.collection = m.source_collection"
                " AND s.source_id = m.source_id)"
            )
            self.conn.execute(
                self.q(
                    "INSERT INTO {changes} (run_id, table_name, row_id, action, old_row)"
                    " SELECT %(run)s, 'memory_items', m.id, 'delete', to_jsonb(m) FROM {memories} m WHERE "
                    + gone
                    + " ON CONFLICT (run_id, table_name, row_id) DO NOTHING"
                ),
                {"run": run_id, "c": collections},
            )
            cur = self.conn.execute(
                self.q("DELETE FROM {memories} m WHERE " + gone), {"c": collections}
            )
            return cur.rowcount

    def is_empty(self) -> bool:
        row = self.conn.execute(
            self.q(
                "SELECT NOT EXISTS (SELECT 1 FROM {memories}) AND NOT EXISTS (SELECT 1 FROM {traces})"
            )
        ).fetchone()
        self.conn.commit()
        return bool(row and row[0])
