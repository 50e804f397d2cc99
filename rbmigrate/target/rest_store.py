"""Read-side of the REST transport: schema check, plan/migrate lookups, verify's read-back.

The same questions PostgresStore answers in SQL, asked of PostgREST: lookups by id are
``in.(...)`` filters cut to URL size, scans page by key, counts use ``count=exact``, and the
two questions PostgREST cannot express (group counts, the schema's catalog) are small
functions of schema.sql. The key must be the service-role key: rbmigrate has to see every
workspace, so a key RLS filters is refused before anything is read (exit 4).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from rbmigrate.errors import SchemaError
from rbmigrate.target.postgres import TargetRow
from rbmigrate.target.rest import RestClient, RestSettings, parse_vector
from rbmigrate.target.rest_errors import SERVICE_KEY_HINT
from rbmigrate.target.schema import CatalogFacts, SchemaStatus, manifest, status_from_facts

if TYPE_CHECKING:
    from rbmigrate.target.rest_writer import RestWriter

MEMORY_COLUMNS = (
    "id,trace_id,title,description,content,content_embedding,error_context,pattern_tags,"
    "difficulty_level,domain_category,parent_memory_id,evolution_stage,workspace_id,created_at,"
    "source_id,source_collection,source_hash,metadata"
)
TRACE_COLUMNS = (
    "id,task,trajectory,outcome,metadata,parent_trace_id,timestamp,num_memories,workspace_id,"
    "source_id,source_hash"
)


def _uuid(value: Any) -> UUID | None:
    return None if value is None else UUID(str(value))


def _time(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(str(value))


def memory_tuple(r: dict[str, Any]) -> tuple[Any, ...]:
    """A memory_items row from JSON, in readback.MEMORY_SELECT's order and types."""
    return (
        _uuid(r["id"]),
        _uuid(r["trace_id"]),
        r["title"],
        r["description"],
        r["content"],
        parse_vector(r["content_embedding"]),
        r["error_context"],
        r["pattern_tags"],
        r["difficulty_level"],
        r["domain_category"],
        _uuid(r["parent_memory_id"]),
        r["evolution_stage"],
        r["workspace_id"],
        _time(r["created_at"]),
        r["source_id"],
        r["source_collection"],
        r["source_hash"],
        r["metadata"],
    )


def trace_tuple(r: dict[str, Any], has_embedding: bool) -> tuple[Any, ...]:
    """A reasoning_traces row from JSON, in readback.TRACE_SELECT's order and types."""
    return (
        _uuid(r["id"]),
        r["task"],
        r["trajectory"],
        r["outcome"],
        r["metadata"],
        _uuid(r["parent_trace_id"]),
        _time(r["timestamp"]),
        r["num_memories"],
        r["workspace_id"],
        r["source_id"],
        r["source_hash"],
        has_embedding,
    )


class RestStore:
    """The target over PostgREST. Lookups cost one request per URL-sized chunk of ids."""

    transport = "rest"

    def __init__(self, client: RestClient) -> None:
        self.client = client
        self.settings = client.settings
        self.tables_exist = False
        self._info: dict[str, Any] | None = None
        self._probed = False
        self._referenced: tuple[tuple[str, ...], set[UUID]] | None = None

    def reconnect(self) -> None:
        """Nothing to do: every request retries on its own."""

    def refresh_types(self) -> None:
        """Nothing to do: vectors travel as text."""

    def close(self) -> None:
        self.client.close()

    # --- schema --------------------------------------------------------------------------
    def info(self) -> dict[str, Any] | None:
        """rbmigrate_schema_info(), or None when the function does not exist (no schema yet).
        Refuses a key that RLS filters: a plan or a verify through it would be wrong."""
        if self._probed:
            return self._info
        try:
            data = self.client.rpc("rbmigrate_schema_info", {}, "read the schema")
        except SchemaError as exc:
            if exc.title != "Schema missing":
                raise
            data = None
        self._probed = True
        if isinstance(data, dict):
            role = str(data.get("role") or "")
            if role != "service_role" and not data.get("bypass_rls"):
                raise SchemaError(
                    f"the key for {self.client.url} runs as {role!r}: row level security would "
                    "hide other workspaces' rows from rbmigrate.",
                    title="Not allowed",
                    hint=SERVICE_KEY_HINT,
                )
            self._info = data
        return self._info

    def describe(self) -> dict[str, Any]:
        info = self.info() or {}
        return {
            "transport": "rest",
            "kind": "supabase",
            "location": self.client.url,
            "server_version": info.get("server_version"),
            "pgvector_version": info.get("pgvector_version"),
        }

    def schema_status(self, dimension: int) -> SchemaStatus:
        info = self.info()
        if info is not None:
            status = status_from_facts(
                CatalogFacts.from_info(info), self.settings.schema, dimension
            )
        else:
            status = self._status_without_info(dimension)
        self.tables_exist = info is not None and all(
            f"table {t}" in status.present for t in ("memory_items", "reasoning_traces")
        )
        return status

    def _status_without_info(self, dimension: int) -> SchemaStatus:
        """No rbmigrate_schema_info(): say which tables exist (a HEAD each), all else missing.
        rbmigrate_runs goes first: only the service role may read it, so another key fails
        here (403) rather than reading a filtered view."""
        m = manifest()
        facts = CatalogFacts()
        for table in sorted(m.tables, key=lambda t: t != "rbmigrate_runs"):
            try:
                self.client.data(
                    self.client.pg.table(table).select("*").limit(0), f"look for {table}"
                )
            except SchemaError as exc:
                if exc.title != "Schema missing":
                    raise
                continue
            facts.tables.add(table)
        status = status_from_facts(facts, self.settings.schema, dimension)
        # nothing beyond the tables can be seen without the function: mark it all missing
        status.problems = [p for p in status.problems if "pgvector" not in p]
        return status

    # --- lookups -------------------------------------------------------------------------
    def memories_by_source(self, collection: str, source_ids: list[str]) -> dict[str, TargetRow]:
        if not self.tables_exist or not source_ids:
            return {}
        rows = self.client.select_in(
            "memory_items",
            "source_id,id,source_hash,workspace_id",
            "source_id",
            source_ids,
            "look up memories",
            lambda b: b.eq("source_collection", collection),
        )
        return {
            r["source_id"]: TargetRow(UUID(r["id"]), r["source_hash"], r["workspace_id"])
            for r in rows
        }

    def memory_owners(self, ids: Iterable[UUID]) -> dict[UUID, tuple[str | None, str | None]]:
        id_list = list(ids)
        if not self.tables_exist or not id_list:
            return {}
        rows = self.client.select_in(
            "memory_items", "id,source_collection,source_id", "id", id_list, "look up memory ids"
        )
        return {UUID(r["id"]): (r["source_collection"], r["source_id"]) for r in rows}

    def existing_memory_ids(self, ids: Iterable[UUID]) -> set[UUID]:
        return set(self.memory_owners(ids))

    def trace_hashes(self, ids: list[UUID]) -> dict[UUID, str | None]:
        if not self.tables_exist or not ids:
            return {}
        rows = self.client.select_in(
            "reasoning_traces", "id,source_hash", "id", ids, "look up traces"
        )
        return {UUID(r["id"]): r["source_hash"] for r in rows}

    def memory_counts(self, collection: str) -> dict[str | None, int]:
        """Rows per workspace (rbmigrate_memory_counts: PostgREST cannot GROUP BY)."""
        if not self.tables_exist:
            return {}
        out: dict[str | None, int] = {}
        start = 0
        while True:
            page = self.client.data(
                self.client.pg.rpc("rbmigrate_memory_counts", {"p_collection": collection})
                .order("workspace_id", nullsfirst=True)
                .range(start, start + 999),
                "count memories per workspace",
            )
            if not page:
                return out
            out.update({r["workspace_id"]: int(r["n"]) for r in page})
            start += len(page)

    def traces_without_embedding(self) -> set[UUID]:
        """Traces whose task embedding is missing (usually none: one short request)."""
        if not self.tables_exist:
            return set()
        out: set[UUID] = set()
        for page in self.client.scan(
            "reasoning_traces",
            "id",
            "id",
            "find traces without a task embedding",
            lambda b: b.is_("task_embedding", "null"),
        ):
            out.update(UUID(r["id"]) for r in page)
        return out

    # --- verify's read-back --------------------------------------------------------------
    def fetch_memory_hashes(
        self, collection: str, source_ids: list[str]
    ) -> dict[str, tuple[UUID, str | None, str | None]]:
        return {
            sid: (row.id, row.source_hash, row.workspace_id)
            for sid, row in self.memories_by_source(collection, source_ids).items()
        }

    def fetch_memories(self, collection: str, source_ids: list[str]) -> dict[str, Sequence[Any]]:
        rows = self.client.select_in(
            "memory_items",
            MEMORY_COLUMNS,
            "source_id",
            source_ids,
            "read memories back",
            lambda b: b.eq("source_collection", collection),
        )
        return {r["source_id"]: memory_tuple(r) for r in rows}

    def fetch_traces(self, ids: list[UUID]) -> dict[UUID, Sequence[Any]]:
        rows = self.client.select_in("reasoning_traces", TRACE_COLUMNS, "id", ids, "read traces")
        bare = self._without_task_embedding(ids)
        return {UUID(r["id"]): trace_tuple(r, r["id"] not in bare) for r in rows}

    def trace_states(self, ids: list[UUID]) -> dict[UUID, tuple[str | None, bool]]:
        rows = self.client.select_in("reasoning_traces", "id,source_hash", "id", ids, "read traces")
        bare = self._without_task_embedding(ids)
        return {UUID(r["id"]): (r["source_hash"], r["id"] not in bare) for r in rows}

    def _without_task_embedding(self, ids: list[UUID]) -> set[str]:
        """Ids (as PostgREST writes them) of those traces whose task_embedding is NULL: the
        vector itself is not worth sending just to learn that it exists."""
        return {
            r["id"]
            for r in self.client.select_in(
                "reasoning_traces",
                "id",
                "id",
                ids,
                "read traces",
                lambda b: b.is_("task_embedding", "null"),
            )
        }

    def count_memories(self, collection: str) -> int:
        return self.client.count(
            "memory_items", "count memories", lambda b: b.eq("source_collection", collection)
        )

    def referenced_among(self, collections: list[str], ids: list[UUID]) -> set[UUID]:
        """PostgREST caps the rows of a response, and a trace has many memories: the set of
        all referenced traces is read once instead."""
        key = tuple(collections)
        if self._referenced is None or self._referenced[0] != key:
            self._referenced = (key, self._referenced_traces(collections))
        return self._referenced[1].intersection(ids)

    def _referenced_traces(self, collections: list[str]) -> set[UUID]:
        out: set[UUID] = set()
        for page in self.client.scan(
            "memory_items",
            "id,trace_id",
            "id",
            "list the traces memories refer to",
            lambda b: b.in_("source_collection", collections),
        ):
            out.update(UUID(r["trace_id"]) for r in page)
        return out

    # --- runs ----------------------------------------------------------------------------
    def runs_table_exists(self) -> bool:
        info = self.info()
        return info is not None and "rbmigrate_runs" in CatalogFacts.from_info(info).tables

    def run_state(self, run_id: str) -> tuple[str, str | None] | None:
        rows = self.client.data(
            self.client.pg.table("rbmigrate_runs")
            .select("status,source_fingerprint")
            .eq("run_id", run_id),
            "read the run",
        )
        return (rows[0]["status"], rows[0]["source_fingerprint"]) if rows else None

    def latest_run(self, fingerprint: str) -> tuple[str, str] | None:
        rows = self.client.data(
            self.client.pg.table("rbmigrate_runs")
            .select("run_id,status")
            .eq("source_fingerprint", fingerprint)
            .in_("command", ["migrate", "headless"])
            .order("started_at", desc=True)
            .limit(1),
            "find the latest run",
        )
        return (rows[0]["run_id"], rows[0]["status"]) if rows else None


class RestTransport:
    """Supabase's REST API: no COPY, indexes kept during the load, the schema pasted once."""

    name = "rest"

    def __init__(
        self,
        settings: RestSettings,
        *,
        cancel: threading.Event | None = None,
        on_retry: Callable[[str, int, str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.cancel = cancel
        self.on_retry = on_retry

    def shown(self) -> str:
        return self.settings.shown()

    def client(self) -> RestClient:
        return RestClient(self.settings, cancel=self.cancel, on_retry=self.on_retry)

    def open_store(self) -> RestStore:
        return RestStore(self.client())

    def open_writer(self) -> RestWriter:
        from rbmigrate.target.rest_writer import RestWriter

        return RestWriter(self.client())

    def transient(self, exc: BaseException) -> bool:
        """Requests retry by themselves; what reaches the engine is final."""
        return False

    def close(self) -> None:
        """Nothing to stop (the embedded server belongs to the direct transport)."""
