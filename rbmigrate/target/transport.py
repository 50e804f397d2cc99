"""Which way rbmigrate talks to the target: a direct PostgreSQL connection, or Supabase's REST API.

The engine works against two small interfaces, a store (everything that reads) and a writer
(runs, checkpoints, batches and what follows them), and asks the transport for fresh ones.
The direct transport is the fast path (binary COPY, deferred index builds) and can create
the schema; the REST transport needs only the project URL and the service-role key.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol
from uuid import UUID

import numpy as np

from rbmigrate.config import Config
from rbmigrate.records.model import MemoryRow, TraceRow
from rbmigrate.target.schema import SchemaStatus


class TargetRowLike(Protocol):
    id: UUID
    source_hash: str | None
    workspace_id: str | None


class TargetStore(Protocol):
    """Reads: schema, the lookups plan and migrate need, verify's read-back, run lookups."""

    transport: str
    tables_exist: bool

    def describe(self) -> dict[str, Any]: ...
    def schema_status(self, dimension: int) -> SchemaStatus: ...
    def reconnect(self) -> None: ...
    def close(self) -> None: ...

    def memories_by_source(self, collection: str, source_ids: list[str]) -> dict[str, Any]: ...
    def memory_owners(self, ids: Iterable[UUID]) -> dict[UUID, tuple[str | None, str | None]]: ...
    def existing_memory_ids(self, ids: Iterable[UUID]) -> set[UUID]: ...
    def trace_hashes(self, ids: list[UUID]) -> dict[UUID, str | None]: ...
    def memory_counts(self, collection: str) -> dict[str | None, int]: ...

    def fetch_memory_hashes(
        self, collection: str, source_ids: list[str]
    ) -> dict[str, tuple[UUID, str | None, str | None]]: ...
    def fetch_memories(
        self, collection: str, source_ids: list[str]
    ) -> dict[str, Sequence[Any]]: ...
    def fetch_traces(self, ids: list[UUID]) -> dict[UUID, Sequence[Any]]: ...
    def trace_states(self, ids: list[UUID]) -> dict[UUID, tuple[str | None, bool]]: ...
    def count_memories(self, collection: str) -> int: ...
    def referenced_among(self, collections: list[str], ids: list[UUID]) -> set[UUID]: ...

    def runs_table_exists(self) -> bool: ...
    def run_state(self, run_id: str) -> tuple[str, str | None] | None: ...
    def latest_run(self, fingerprint: str) -> tuple[str, str] | None: ...


class TargetWriter(Protocol):
    """Writes, owned by the migration's main thread."""

    def acquire(self, fingerprint: str, run_id: str) -> None: ...
    def register_run(
        self,
        run_id: str,
        command: str,
        fingerprint: str,
        source: dict[str, Any],
        target: dict[str, Any],
        config: dict[str, Any],
        version: str,
    ) -> None: ...
    def set_run(
        self,
        run_id: str,
        *,
        status: str | None = None,
        phase: str | None = None,
        counts: dict[str, Any] | None = None,
        finished: bool = False,
    ) -> None: ...
    def checkpoints(self, run_id: str) -> dict[str, dict[str, Any]]: ...
    def write_batch(
        self,
        run_id: str,
        traces: Sequence[tuple[TraceRow, np.ndarray | None]],
        memories: Sequence[MemoryRow],
        finish: Callable[[Any], dict[str, Any]],
    ) -> Any: ...
    def mark_done(
        self, run_id: str, collection: str, batches: int, counts: dict[str, Any]
    ) -> None: ...
    def resolve_parents(self, collections: list[str]) -> int: ...
    def delete_missing(
        self, run_id: str, collections: list[str], source_ids: Iterable[tuple[str, str]]
    ) -> int: ...
    def is_empty(self) -> bool: ...
    def written_ids(self, run_id: str, table: str = "memory_items") -> set[UUID]: ...
    def close(self) -> None: ...


class Transport(Protocol):
    name: str  # postgres | rest

    def shown(self) -> str: ...
    def open_store(self) -> TargetStore: ...
    def open_writer(self) -> TargetWriter: ...
    def transient(self, exc: BaseException) -> bool: ...
    def close(self) -> None: ...


def open_transport(
    cfg: Config,
    *,
    cancel: threading.Event | None = None,
    on_retry: Callable[[str, int, str], None] | None = None,
) -> Transport:
    """REST when a supabase_url is given and no db_url (README "Transports"); else direct."""
    if cfg.uses_rest():
        from rbmigrate.target.rest import rest_settings
        from rbmigrate.target.rest_store import RestTransport

        return RestTransport(rest_settings(cfg), cancel=cancel, on_retry=on_retry)
    from rbmigrate.target.connection import resolve_target
    from rbmigrate.target.postgres import PostgresTransport

    return PostgresTransport(resolve_target(cfg), cfg.target.schema)
