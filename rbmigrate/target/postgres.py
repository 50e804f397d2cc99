"""Read-side queries against the target over a direct PostgreSQL connection.

Everything here reads; the plan uses only this, so a dry run cannot write to the target.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID

import psycopg
from psycopg import sql

from rbmigrate.target import readback
from rbmigrate.target.connection import ResolvedTarget, connect
from rbmigrate.target.schema import SchemaStatus, inspect_schema, quote_ident

if TYPE_CHECKING:
    from rbmigrate.target.writer import PostgresWriter


@dataclass(frozen=True)
class TargetRow:
    id: UUID
    source_hash: str | None
    workspace_id: str | None


class PostgresStore:
    """The target over psycopg: schema inspection and the lookups a plan needs."""

    transport = "postgres"

    def __init__(self, resolved: ResolvedTarget, schema: str = "public") -> None:
        self.resolved = resolved
        self.schema = schema
        self.qschema = quote_ident(schema)
        self.conn = connect(resolved.dsn, autocommit=True, schema=schema)
        self.tables_exist = False

    def reconnect(self) -> None:
        with contextlib.suppress(psycopg.Error):
            self.conn.close()
        self.conn = connect(self.resolved.dsn, autocommit=True, schema=self.schema)

    def refresh_types(self) -> None:
        """After the bootstrap created the vector extension, teach this connection the type."""
        from pgvector.psycopg import register_vector

        register_vector(self.conn)

    def t(self, table: str) -> sql.Composed:
        return sql.SQL("{}.{}").format(sql.Identifier(self.schema), sql.Identifier(table))

    def describe(self) -> dict[str, Any]:
        version = self.conn.execute("SHOW server_version").fetchone()
        ext = self.conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
        ).fetchone()
        return {
            "transport": "postgres",
            "kind": self.resolved.kind,
            "location": self.resolved.shown(),
            "server_version": version[0] if version else None,
            "pgvector_version": ext[0] if ext else None,
        }

    def schema_status(self, dimension: int) -> SchemaStatus:
        status = inspect_schema(self.conn, self.schema, dimension)
        self.tables_exist = all(
            f"table {t}" in status.present for t in ("memory_items", "reasoning_traces")
        )
        return status

    # --- lookups (each batch is one round trip) -------------------------------------------
    def memories_by_source(self, collection: str, source_ids: list[str]) -> dict[str, TargetRow]:
        if not self.tables_exist or not source_ids:
            return {}
        rows = self.conn.execute(
            sql.SQL(
                "SELECT source_id, id, source_hash, workspace_id FROM {} "
                "WHERE source_collection = %s AND source_id = ANY(%s)"
            ).format(self.t("memory_items")),
            (collection, source_ids),
        ).fetchall()
        return {r[0]: TargetRow(r[1], r[2], r[3]) for r in rows}

    def memory_owners(self, ids: Iterable[UUID]) -> dict[UUID, tuple[str | None, str | None]]:
        """(source_collection, source_id) of existing rows with these ids."""
        id_list = list(ids)
        if not self.tables_exist or not id_list:
            return {}
        rows = self.conn.execute(
            sql.SQL("SELECT id, source_collection, source_id FROM {} WHERE id = ANY(%s)").format(
                self.t("memory_items")
            ),
            (id_list,),
        ).fetchall()
        return {r[0]: (r[1], r[2]) for r in rows}

    def existing_memory_ids(self, ids: Iterable[UUID]) -> set[UUID]:
        return set(self.memory_owners(ids))

    def trace_hashes(self, ids: list[UUID]) -> dict[UUID, str | None]:
        if not self.tables_exist or not ids:
            return {}
        rows = self.conn.execute(
            sql.SQL("SELECT id, source_hash FROM {} WHERE id = ANY(%s)").format(
                self.t("reasoning_traces")
            ),
            (ids,),
        ).fetchall()
        return {r[0]: r[1] for r in rows}

    def memory_counts(self, collection: str) -> dict[str | None, int]:
        """Rows per workspace already in the target for this collection."""
        if not self.tables_exist:
            return {}
        rows = self.conn.execute(
            sql.SQL(
                "SELECT workspace_id, count(*) FROM {} WHERE source_collection = %s "
                "GROUP BY workspace_id"
            ).format(self.t("memory_items")),
            (collection,),
        ).fetchall()
        return {r[0]: int(r[1]) for r in rows}

    def has_task_embeddings(self) -> bool:
        """Whether any target trace holds a task embedding; none means an initial load."""
        if not self.tables_exist:
            return False
        row = self.conn.execute(
            sql.SQL("SELECT EXISTS (SELECT 1 FROM {} WHERE task_embedding IS NOT NULL)").format(
                self.t("reasoning_traces")
            )
        ).fetchone()
        return bool(row and row[0])

    # --- verify's read-back (autocommit: nothing to end) -------------------------------------
    def fetch_memory_hashes(
        self, collection: str, source_ids: list[str]
    ) -> dict[str, tuple[UUID, str | None, str | None]]:
        return readback.fetch_memory_hashes(self.conn, self.schema, collection, source_ids)

    def fetch_memories(self, collection: str, source_ids: list[str]) -> dict[str, Sequence[Any]]:
        return readback.fetch_memories(self.conn, self.schema, collection, source_ids)

    def fetch_traces(self, ids: list[UUID]) -> dict[UUID, Sequence[Any]]:
        return readback.fetch_traces(self.conn, self.schema, ids)

    def trace_states(self, ids: list[UUID]) -> dict[UUID, tuple[str | None, bool]]:
        """(stored hash, has a task embedding): what verify needs of a trace it does not
        hash again, without reading the row."""
        rows = self.conn.execute(
            sql.SQL(
                "SELECT id, source_hash, task_embedding IS NOT NULL FROM {} WHERE id = ANY(%s)"
            ).format(self.t("reasoning_traces")),
            (ids,),
        ).fetchall()
        return {r[0]: (r[1], bool(r[2])) for r in rows}

    def count_memories(self, collection: str) -> int:
        row = self.conn.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE source_collection = %s").format(
                self.t("memory_items")
            ),
            (collection,),
        ).fetchone()
        return int(row[0]) if row else 0

    def referenced_among(self, collections: list[str], ids: list[UUID]) -> set[UUID]:
        """Those of `ids` that a memory of `collections` refers to (by idx_memories_trace:
        a page at a time, so memory stays flat)."""
        rows = self.conn.execute(
            sql.SQL(
                "SELECT DISTINCT trace_id FROM {} WHERE trace_id = ANY(%s)"
                " AND source_collection = ANY(%s)"
            ).format(self.t("memory_items")),
            (ids, collections),
        ).fetchall()
        return {r[0] for r in rows}

    # --- runs (engine.runs.choose_run) ------------------------------------------------------
    def runs_table_exists(self) -> bool:
        row = self.conn.execute(
            "SELECT to_regclass(%s)", (f"{self.schema}.rbmigrate_runs",)
        ).fetchone()
        return bool(row and row[0] is not None)

    def run_state(self, run_id: str) -> tuple[str, str | None] | None:
        row = self.conn.execute(
            sql.SQL("SELECT status, source_fingerprint FROM {} WHERE run_id = %s").format(
                self.t("rbmigrate_runs")
            ),
            (run_id,),
        ).fetchone()
        return (row[0], row[1]) if row else None

    def latest_run(self, fingerprint: str) -> tuple[str, str] | None:
        row = self.conn.execute(
            sql.SQL(
                "SELECT run_id, status FROM {} WHERE source_fingerprint = %s"
                " AND command IN ('migrate', 'headless') ORDER BY started_at DESC LIMIT 1"
            ).format(self.t("rbmigrate_runs")),
            (fingerprint,),
        ).fetchone()
        return (row[0], row[1]) if row else None

    def close(self) -> None:
        with contextlib.suppress(psycopg.Error):
            self.conn.close()


class PostgresTransport:
    """The direct connection: binary COPY, deferred index builds, the bootstrap."""

    name = "postgres"

    def __init__(self, resolved: ResolvedTarget, schema: str) -> None:
        self.resolved = resolved
        self.schema = schema

    @property
    def dsn(self) -> str:
        return self.resolved.dsn

    def shown(self) -> str:
        return self.resolved.shown()

    def open_store(self) -> PostgresStore:
        return PostgresStore(self.resolved, self.schema)

    def open_writer(self) -> PostgresWriter:
        from rbmigrate.target.writer import PostgresWriter

        return PostgresWriter(self.resolved.dsn, self.schema)

    def transient(self, exc: BaseException) -> bool:
        """A lost or reset connection: worth reconnecting and resuming from the checkpoint."""
        return isinstance(
            exc, psycopg.OperationalError | psycopg.InterfaceError
        ) and not isinstance(exc, psycopg.errors.InsufficientPrivilege)

    def close(self) -> None:
        self.resolved.close()
