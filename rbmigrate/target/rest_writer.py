"""Write-side of the REST transport: runs, leases, checkpoints and one request per batch.

A batch is one call of ``rbmigrate_merge_batch`` (schema.sql): in one transaction it refuses
ids that belong to other records, logs the old rows for rollback, merges traces and
memories exactly as the direct transport's merge does (unchanged rows untouched, a parent
that has not arrived kept in metadata) and moves the checkpoint. So a batch is committed
whole or not at all, and a request repeated after a lost answer is recognised by its
checkpoint and answers what was done (its counts are not counted twice).

Without a connection there is no advisory lock: a run is held by a lease in its row,
renewed by every batch and by a heartbeat thread. A process on the same host that holds a
lease and no longer exists is taken over at once (a killed run resumes immediately); one on
another host after LEASE_S seconds without a heartbeat.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import numpy as np
from postgrest.types import ReturnMethod

from rbmigrate.errors import RbmigrateError, RunBusy
from rbmigrate.records.model import MemoryRow, TraceRow
from rbmigrate.target.rest import RestClient, vector_text
from rbmigrate.target.rest_errors import RestRequestError
from rbmigrate.target.writer import MergeResult

MINIMAL = ReturnMethod.minimal  # no rows sent back
LEASE_S = 90  # a lease without a heartbeat for this long is free
HEARTBEAT_S = 20
DELETE_CHUNK = 500


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _iso(value: datetime) -> str:
    return (value if value.tzinfo else value.astimezone(UTC)).isoformat()


def _str(value: UUID | None) -> str | None:
    return None if value is None else str(value)


def lease_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def gone_from_this_host(owner: str) -> bool:
    """True when `owner` names a process of this host that has ended (or is a zombie)."""
    host, _, rest = owner.partition(":")
    pid_text = rest.split(":", 1)[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("State:"):
                return "Z" in line.split(":", 1)[1]
    return False


def trace_json(row: TraceRow, embedding: np.ndarray | None) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "task": row.task,
        "task_embedding": vector_text(embedding),
        "trajectory": row.trajectory,
        "outcome": row.outcome,
        "metadata": row.metadata,
        "parent_trace_id": _str(row.parent_trace_id),
        "timestamp": _iso(row.timestamp),
        "num_memories": row.num_memories,
        "workspace_id": row.workspace_id,
        "source_id": row.source_id,
        "source_hash": row.source_hash,
    }


def memory_json(row: MemoryRow) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "trace_id": str(row.trace_id),
        "title": row.title,
        "description": row.description,
        "content": row.content,
        "content_embedding": vector_text(row.embedding),
        "error_context": row.error_context,
        "pattern_tags": row.pattern_tags,
        "difficulty_level": row.difficulty_level,
        "domain_category": row.domain_category,
        "parent_ref": _str(row.parent_ref),
        "evolution_stage": row.evolution_stage,
        "workspace_id": row.workspace_id,
        "created_at": _iso(row.created_at),
        "source_id": row.source_id,
        "source_collection": row.source_collection,
        "source_hash": row.source_hash,
        "metadata": row.metadata,
    }


def unique_by_id(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per id (an upsert that meets an id twice fails: 'cannot affect row a second
    time'); the rules already reject duplicates, this keeps a request valid regardless."""
    return list({r["id"]: r for r in reversed(rows)}.values())[::-1]


class RestWriter:
    """Writes over PostgREST. Not thread-safe except for its heartbeat."""

    def __init__(self, client: RestClient) -> None:
        self.client = client
        self.owner = lease_owner()
        self.run_id: str | None = None
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None
        self.lost: str | None = None

    # --- the lease -------------------------------------------------------------------------
    def acquire(self, fingerprint: str, run_id: str) -> None:
        got = self._claim(run_id, None)
        if not got.get("claimed") and gone_from_this_host(str(got.get("owner"))):
            got = self._claim(run_id, str(got.get("owner")))
        if not got.get("claimed"):
            raise RunBusy(
                f"run {got.get('run_id')} is migrating this source into this target right now "
                f"(process {got.get('owner')}, last heartbeat {got.get('age_s')} s ago).",
                hint=f"wait for it to finish or stop it; a run that died is taken over after "
                f"{LEASE_S} s without a heartbeat.",
            )
        self.run_id = run_id
        if self._heartbeat is None:
            self._heartbeat = threading.Thread(
                target=self._beat, name="rbmigrate-heartbeat", daemon=True
            )
            self._heartbeat.start()

    def _claim(self, run_id: str, takeover: str | None) -> dict[str, Any]:
        got = self.client.rpc(
            "rbmigrate_claim_run",
            {
                "p_run_id": run_id,
                "p_owner": self.owner,
                "p_stale_seconds": LEASE_S,
                "p_takeover": takeover,
            },
            "hold the run",
        )
        return dict(got or {})

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            if self.run_id is None:
                continue
            try:
                got = self._claim(self.run_id, None)
            except RbmigrateError:
                continue  # the next batch fails loudly if the API is really gone
            if not got.get("claimed"):
                self.lost = str(got.get("owner"))

    # --- runs ------------------------------------------------------------------------------
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
        row = {
            "run_id": run_id,
            "command": command,
            "status": "running",
            "source_fingerprint": fingerprint,
            "source": source,
            "target": target,
            "config": config,
            "rbmigrate_version": version,
            "updated_at": _now(),
            "finished_at": None,
        }
        self.client.send(
            self.client.pg.table("rbmigrate_runs").upsert(
                row, on_conflict="run_id", returning=MINIMAL
            ),
            "register the run",
        )

    def set_run(
        self,
        run_id: str,
        *,
        status: str | None = None,
        phase: str | None = None,
        counts: dict[str, Any] | None = None,
        finished: bool = False,
    ) -> None:
        patch: dict[str, Any] = {"updated_at": _now()}
        for key, value in (("status", status), ("phase", phase), ("counts", counts)):
            if value is not None:
                patch[key] = value
        if finished:
            patch["finished_at"] = _now()
        self.client.send(
            self.client.pg.table("rbmigrate_runs")
            .update(patch, returning=MINIMAL)
            .eq("run_id", run_id),
            "record the run's state",
        )

    def checkpoints(self, run_id: str) -> dict[str, dict[str, Any]]:
        rows = self.client.data(
            self.client.pg.table("rbmigrate_checkpoints")
            .select("collection,position,batches,done,counts")
            .eq("run_id", run_id),
            "read the checkpoints",
        )
        return {
            r["collection"]: {
                "position": r["position"],
                "batches": r["batches"],
                "done": r["done"],
                "counts": r["counts"],
            }
            for r in rows or []
        }

    def mark_done(self, run_id: str, collection: str, batches: int, counts: dict[str, Any]) -> None:
        row = {
            "run_id": run_id,
            "collection": collection,
            "position": 0,
            "batches": batches,
            "done": True,
            "counts": counts,
            "updated_at": _now(),
        }
        self.client.send(
            self.client.pg.table("rbmigrate_checkpoints").upsert(
                row, on_conflict="run_id,collection", returning=MINIMAL
            ),
            "mark a collection done",
        )

    # --- one batch -------------------------------------------------------------------------
    def write_batch(
        self,
        run_id: str,
        traces: Sequence[tuple[TraceRow, np.ndarray | None]],
        memories: Sequence[MemoryRow],
        finish: Callable[[MergeResult], dict[str, Any]],
    ) -> MergeResult:
        """One request. `finish(result)` returns the checkpoint for a result; it is asked
        first with no merge outcome (the function adds the real one) and last with it."""
        trace_rows = unique_by_id([trace_json(t, e) for t, e in traces])
        memory_rows = unique_by_id([memory_json(m) for m in memories])
        taken: list[tuple[str, str | None, str | None]] = []
        while True:
            base = dict(finish(MergeResult(taken=list(taken))))
            refused = {t[0] for t in taken}
            params = {
                "p_run_id": run_id,
                "p_owner": self.owner,
                "p_traces": trace_rows,
                "p_memories": [m for m in memory_rows if m["source_id"] not in refused],
                "p_checkpoint": base,
            }
            try:
                got = dict(self.client.rpc("rbmigrate_merge_batch", params, "write a batch"))
                break
            except RestRequestError as exc:
                code = exc.problem.code
                if code == "RBM01" and exc.problem.details:
                    taken += [(str(t[0]), t[1], t[2]) for t in _json_list(exc.problem.details)]
                    continue
                if code == "RBM02":
                    raise RunBusy(
                        f"run {run_id} was taken over by another process ({self.lost or 'unknown'}).",
                        hint="only one process may migrate a source into a target at a time.",
                    ) from None
                raise
        result = MergeResult(taken=taken)
        if got.get("replayed"):
            stored, sent = got.get("counts") or {}, base["counts"]
            result.memories_inserted = int(stored["inserted"]) - int(sent["inserted"])
            result.memories_updated = int(stored["updated"]) - int(sent["updated"])
            result.traces_inserted = int(stored["traces_inserted"]) - int(sent["traces_inserted"])
            result.traces_updated = int(stored["traces_updated"]) - int(sent["traces_updated"])
        else:
            result.memories_inserted = int(got["memories_inserted"])
            result.memories_updated = int(got["memories_updated"])
            result.traces_inserted = int(got["traces_inserted"])
            result.traces_updated = int(got["traces_updated"])
        finish(result)
        return result

    # --- after the batches -------------------------------------------------------------------
    def resolve_parents(self, collections: list[str]) -> int:
        got = self.client.rpc(
            "rbmigrate_resolve_parents", {"p_collections": collections}, "link late parents"
        )
        return int(got or 0)

    def delete_missing(
        self, run_id: str, collections: list[str], source_ids: Iterable[tuple[str, str]]
    ) -> int:
        """Target rows of these collections whose source record is gone: found by a scan,
        deleted (and logged for rollback) in chunks, each chunk one transaction."""
        known: dict[str, set[str]] = {c: set() for c in collections}
        for collection, source_id in source_ids:
            if collection in known:
                known[collection].add(source_id)
        doomed: list[str] = []
        for collection in collections:

            def where(b: Any, c: str = collection) -> Any:
                return b.eq("source_collection", c).not_.is_("source_id", "null")

            for page in self.client.scan(
                "memory_items", "id,source_id", "id", "find rows the source lost", where
            ):
                doomed += [r["id"] for r in page if r["source_id"] not in known[collection]]
        deleted = 0
        for start in range(0, len(doomed), DELETE_CHUNK):
            got = self.client.rpc(
                "rbmigrate_delete_memories",
                {"p_run_id": run_id, "p_ids": doomed[start : start + DELETE_CHUNK]},
                "delete rows the source lost",
            )
            deleted += int(got or 0)
        return deleted

    def is_empty(self) -> bool:
        for table in ("memory_items", "reasoning_traces"):
            if self.client.data(
                self.client.pg.table(table).select("id").limit(1), f"look into {table}"
            ):
                return False
        return True

    def written_ids(self, run_id: str, table: str = "memory_items") -> set[UUID]:
        out: set[UUID] = set()
        for page in self.client.scan(
            "rbmigrate_changes",
            "row_id",
            "row_id",
            "list what the run wrote",
            lambda b: (
                b.eq("run_id", run_id).eq("table_name", table).in_("action", ["insert", "update"])
            ),
        ):
            out.update(UUID(r["row_id"]) for r in page)
        return out

    def close(self) -> None:
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join(5)
        if self.run_id is not None:
            with contextlib.suppress(RbmigrateError):
                self.client.send(
                    self.client.pg.table("rbmigrate_runs")
                    .update({"lease_owner": None}, returning=MINIMAL)
                    .eq("run_id", self.run_id)
                    .eq("lease_owner", self.owner),
                    "release the run",
                    delays=(0.5,),
                )
        self.client.close()


def _json_list(text: str) -> list[Any]:
    value = json.loads(text)
    return value if isinstance(value, list) else []
