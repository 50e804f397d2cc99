"""Migrate: read, normalize and embed ahead in one thread; write + checkpoint in another.

A reader thread (engine.producer) pages through the snapshot, applies the record rules and
embeds what needs it (the CPU work); the main thread writes each batch in one transaction
that also moves the checkpoint (the database work): binary COPY + merge over a direct
connection, one `rbmigrate_merge_batch` request over REST. A bounded queue lets both run at
once. Any failure, a kill or a lost connection leaves the target at a committed checkpoint;
the run resumes from there with no duplicate and no gap.
"""

from __future__ import annotations

import contextlib
import queue
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from uuid import UUID

from rbmigrate.embeddings import TextEncoder
from rbmigrate.engine.beside import Beside
from rbmigrate.engine.expected import ExpectedRows
from rbmigrate.engine.producer import (
    END,
    BatchProducer,
    CollectionDone,
    Failure,
    LegacyTraces,
    RestOptions,
    WorkItem,
)
from rbmigrate.engine.rejects import RejectsLog, entry
from rbmigrate.engine.session import Session
from rbmigrate.engine.task_embeddings import TaskEmbeddingFill
from rbmigrate.errors import Interrupted, RbmigrateError, TargetConnectionError
from rbmigrate.records.codes import Reject
from rbmigrate.records.model import SourceRecord
from rbmigrate.source.base import CollectionInfo
from rbmigrate.target.postgres import PostgresTransport
from rbmigrate.target.rest_errors import RequestTooLarge
from rbmigrate.target.transport import TargetWriter, Transport
from rbmigrate.target.writer import MergeResult

T = TypeVar("T")
LEGACY = "(traces.json)"
QUEUE_DEPTH = 2
CHECKPOINT_S = 2.0  # at most this long between checkpoints of batches that write nothing
RECONNECT_DELAYS = (1, 2, 4, 8, 15, 30, 30, 30)
REST_REQUEST_BYTES = 2_000_000  # per batch request over REST; halved on a 413 or a timeout
REST_MIN_BYTES = 20_000


@dataclass
class AfterWrite:
    parents_missing: int = 0
    deleted: int | None = None
    built: list[str] = field(default_factory=list)
    tasks_encoded: int = 0
    beside: Any = None  # what `beside` returned; None if it did not run or failed


@dataclass
class Tally:
    """Counts of one collection in this run; stored in its checkpoint, so they survive kills."""

    records: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    skipped: int = 0
    traces_inserted: int = 0
    traces_updated: int = 0
    warnings: Counter[str] = field(default_factory=Counter)
    rejects: Counter[str] = field(default_factory=Counter)

    def as_json(self) -> dict[str, Any]:
        d = {
            k: getattr(self, k)
            for k in (
                "records",
                "inserted",
                "updated",
                "unchanged",
                "rejected",
                "skipped",
                "traces_inserted",
                "traces_updated",
            )
        }
        d["warnings"] = dict(self.warnings)
        d["rejects"] = dict(self.rejects)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any] | None) -> Tally:
        t = cls()
        for k, v in (d or {}).items():
            if k in ("warnings", "rejects"):
                getattr(t, k).update(v)
            elif hasattr(t, k):
                setattr(t, k, int(v))
        return t

    def copy(self) -> Tally:
        return Tally.from_json(self.as_json())


class Migration:
    """One migrate run, over either transport."""

    def __init__(
        self,
        session: Session,
        transport: Transport,
        run_id: str,
        embedder: TextEncoder | None,
        records: list[SourceRecord] | None = None,
    ) -> None:
        self.session = session
        self.ctx = session.ctx
        self.cfg = session.ctx.cfg
        self.transport = transport
        self.direct = transport if isinstance(transport, PostgresTransport) else None
        self.run_id = run_id
        self.embedder = embedder
        self.fill: TaskEmbeddingFill | None = None
        self._next_checkpoint = 0.0
        self.records = records
        self.tallies: dict[str, Tally] = {}
        self.rejects = RejectsLog(self.ctx.run_dir / "rejects.jsonl")
        self.expected = ExpectedRows(self.ctx.run_dir / "expected.sqlite")
        self.writer: TargetWriter | None = None
        self.read_counts: Counter[str] = Counter()
        self.max_bytes = REST_REQUEST_BYTES
        self.unembedded: set[UUID] = set()  # REST: target traces lacking a task embedding

    # --- connections ---------------------------------------------------------------------
    def connect_writer(self, fp: str) -> TargetWriter:
        writer = self.transport.open_writer()
        try:
            writer.acquire(fp, self.run_id)
        except BaseException:
            writer.close()
            raise
        return writer

    def reconnect(self, fp: str, error: BaseException) -> TargetWriter:
        self.ctx.log(
            "warning",
            f"lost the database connection ({str(error).strip().splitlines()[0][:200]}); "
            "reconnecting and resuming from the last checkpoint",
            code="reconnect",
        )
        if self.writer is not None:
            self.writer.close()
        last: BaseException = error
        for delay in RECONNECT_DELAYS:
            if self.ctx.control.cancel.wait(delay):
                raise Interrupted("Stopped while reconnecting.", hint=self.ctx.resume_hint())
            try:
                return self.connect_writer(fp)
            except TargetConnectionError as exc:
                last = exc
                if "Authentication" in exc.title:
                    raise
        raise TargetConnectionError(
            f"the database stayed unreachable for {sum(RECONNECT_DELAYS)}s: {last}",
            hint=f"everything up to the last checkpoint is committed; {self.ctx.resume_hint()}",
        )

    def resilient(self, fp: str, step: Callable[[], T]) -> T:
        """Run an idempotent step; on a lost connection reconnect and run it again."""
        while True:
            try:
                return step()
            except Interrupted:
                raise
            except BaseException as exc:
                if not self.transport.transient(exc):
                    raise
                self.writer = self.reconnect(fp, exc)
                if self.session.store is not None:
                    self.session.store.reconnect()

    def set_run(self, **fields: Any) -> None:
        assert self.writer is not None
        self.writer.set_run(self.run_id, **fields)

    def after_write(
        self, fp: str, *, with_deletes: bool, beside: Callable[[], Any] | None = None
    ) -> AfterWrite:
        """Link late parents, delete what the source lost (if asked), fill the task
        embeddings (with `beside` in a low-priority thread meanwhile), then build the
        deferred indexes."""
        names = [c.name for c in self.session.selected]
        out = AfterWrite()
        out.parents_missing = self.resilient(fp, lambda: self._writer().resolve_parents(names))
        if with_deletes:
            with self.ctx.phase("delete-missing", unit="rows") as counter:
                out.deleted = self.resilient(
                    fp,
                    lambda: self._writer().delete_missing(
                        self.run_id, names, self.session.index.source_ids()
                    ),
                )
                counter[0] = out.deleted
        if self.fill is not None and not self.fill.wait_counted(self.ctx.checkpoint):
            self.fill.join()
            self.fill = None
        if self.fill is not None:
            # torch and an HNSW build on the same two cores slow each other more than they
            # gain: fill the task embeddings first (with every core: the writes are done),
            # then build every deferred index
            helper = Beside(beside, "rbmigrate-beside-embed") if beside is not None else None
            try:
                out.tasks_encoded = self._embed(self.fill)
            finally:
                if helper is not None:
                    out.beside = self._join_beside(helper)
        out.built += self._build(fp, None)
        return out

    def _embed(self, fill: TaskEmbeddingFill) -> int:
        """The embed phase: the encoder takes every core, the updater fills the rows."""
        fill.embedder.share_cores(False)
        fill.start_updating()
        self.set_run(phase="embed")
        with self.ctx.phase("embed", total=fill.stats.needed, unit="tasks") as counter:
            while fill.running():
                self.ctx.checkpoint()
                self.ctx.progress("embed", fill.stats.updated, fill.stats.needed, "tasks")
                time.sleep(0.2)
            stats = fill.join()
            counter[0] = stats.updated
        return stats.encoded

    def _join_beside(self, helper: Beside[Any]) -> Any:
        """What the work beside the embed phase returned; None (logged) if it failed."""
        result = helper.join()
        if isinstance(helper.error, Interrupted):
            self.ctx.checkpoint()  # the stop that interrupted it
        elif helper.error is not None:
            self.ctx.log(
                "info",
                f"checking the target beside the encoder failed ({helper.error});"
                " it is checked after the encoder instead",
                code="verify_beside_failed",
            )
        return result

    def _writer(self) -> TargetWriter:
        assert self.writer is not None
        return self.writer

    def _build(self, fp: str, tables: tuple[str, ...] | None) -> list[str]:
        """Build the run's deferred indexes (of `tables`, or all that remain). Direct only:
        over REST the indexes are never dropped."""
        from rbmigrate.target.indexes import build_indexes, pending_indexes
        from rbmigrate.target.writer import PostgresWriter

        direct = self.direct
        if direct is None:
            return []
        schema = self.cfg.target.schema

        def pending() -> list[dict[str, str]]:
            writer = self._writer()
            assert isinstance(writer, PostgresWriter)
            return pending_indexes(writer.conn, schema, self.run_id)

        if not [p for p in self.resilient(fp, pending) if tables is None or p["table"] in tables]:
            return []
        self.set_run(phase="index")
        with self.ctx.phase("index", unit="tuples") as counter:
            built = self.resilient(
                fp,
                lambda: build_indexes(
                    direct.dsn,
                    schema,
                    self.run_id,
                    lambda name, done, total: self.ctx.progress("index", done, total, "tuples"),
                    tables=tables,
                ),
            )
            counter[0] = len(built)
        return built

    def start_fill(self) -> None:
        """Direct: begin encoding the trace tasks that need an embedding, before anything is
        written (filled after the writes). REST: note the target traces that lack one (the
        producer encodes tasks inline and sends those traces again)."""
        from rbmigrate.target.postgres import PostgresStore
        from rbmigrate.target.rest_store import RestStore

        if self.embedder is None:
            return
        store = self.session.store
        if isinstance(store, RestStore):
            self.embedder.check_dimension(self.session.dimension, "the target")
            self.unembedded = store.traces_without_embedding()
            return
        assert isinstance(store, PostgresStore) and self.direct is not None
        # the encoder checks the model's dimension once loaded; the write loop polls for it.
        # It leaves the writes a core until they are done.
        self.embedder.share_cores(True)
        self.fill = TaskEmbeddingFill(
            self.embedder,
            self.session.dimension,
            self.direct.dsn,
            self.cfg.target.schema,
            self.session.index.path,
            self.ctx.control.cancel,
            local_server=self.direct.resolved.kind == "embedded",
        )
        self.fill.start_encoding()

    # --- the write loop ------------------------------------------------------------------
    def run(self, fp: str) -> None:
        self.writer = self.connect_writer(fp)
        while True:
            try:
                self._pass()
                return
            except Interrupted:
                raise
            except RequestTooLarge as exc:
                self._smaller_requests(exc)
            except BaseException as exc:
                if not self.transport.transient(exc):
                    raise
                self.writer = self.reconnect(fp, exc)

    def _smaller_requests(self, exc: RequestTooLarge) -> None:
        """REST: a batch was too large for the API; nothing of it was written, so the pass
        starts again from the checkpoint with requests half as large."""
        if self.max_bytes <= REST_MIN_BYTES:
            raise RbmigrateError(
                f"{exc.message} Even batches of {self.max_bytes} bytes are refused.",
                title="Request too large",
                hint="raise the API's request size limit or statement timeout, or migrate over "
                "a direct connection (--db-url).",
            ) from None
        self.max_bytes = max(
            REST_MIN_BYTES, min(self.max_bytes, exc.sent_bytes or self.max_bytes) // 2
        )
        self.ctx.log(
            "warning",
            f"{exc.message}; sending batches of at most {self.max_bytes} bytes from now on",
            code="smaller_batches",
        )

    def _pass(self) -> None:
        """From the committed checkpoints to the end, once. Raises on a lost connection."""
        assert self.writer is not None
        checkpoints = self.writer.checkpoints(self.run_id)
        committed = max(
            (c["counts"].get("rejects_offset", 0) for c in checkpoints.values()), default=0
        )
        self.rejects.truncate(committed)
        plan: list[tuple[CollectionInfo, int]] = []
        if LEGACY in checkpoints:
            self.tallies[LEGACY] = Tally.from_json(checkpoints[LEGACY]["counts"])
        for coll in self.session.selected:
            cp = checkpoints.get(coll.name)
            self.tallies[coll.name] = Tally.from_json(cp["counts"] if cp else None)
            if cp and cp["done"]:
                continue
            plan.append((coll, int(cp["position"]) if cp else 0))
        batches = {name: int(cp["batches"]) for name, cp in checkpoints.items()}
        lookup = self.transport.open_store()
        lookup.tables_exist = True
        out: queue.Queue[Any] = queue.Queue(maxsize=QUEUE_DEPTH)
        producer = BatchProducer(
            self.session,
            plan,
            lookup,
            self.embedder,
            out,
            reembed=self.cfg.migration.reembed_missing and self.embedder is not None,
            records=self.records,
            rest=None
            if self.direct is not None
            else RestOptions(self.max_bytes, self.embedder, self.unembedded),
        )
        producer.empty = {c.name for c, _after in plan if not lookup.memory_counts(c.name)}
        total = sum(c.count for c in self.session.selected)
        done = sum(t.records for t in self.tallies.values())
        producer.start()
        try:
            while True:
                self.ctx.checkpoint()
                if self.fill is not None:
                    self.fill.raise_if_failed()
                try:
                    item = out.get(timeout=0.2)
                except queue.Empty:
                    continue
                if item is END:
                    return
                if isinstance(item, Failure):
                    raise item.error
                if isinstance(item, CollectionDone):
                    self._finish_collection(item.collection, batches.get(item.collection.name, 0))
                    continue
                if isinstance(item, LegacyTraces):
                    self._write_legacy(item)
                    continue
                name = item.collection.name
                batches[name] = batches.get(name, 0) + 1
                self._write(item, batches[name])
                done += item.batch.records
                self.ctx.progress("write", done, total)
        finally:
            producer.stop.set()
            with contextlib.suppress(queue.Empty):
                while True:
                    out.get_nowait()
            producer.join(30)
            lookup.close()

    def _write(self, item: WorkItem, batch_no: int) -> None:
        assert self.writer is not None
        batch = item.batch
        coll = batch.collection
        before = self.tallies[coll].copy()
        lines = [entry(r.record, r.issue.code, r.issue.message) for r in batch.rejects]
        self.rejects.write(lines)
        self.expected.add([*batch.rows, *batch.unchanged])
        pending: dict[str, Tally] = {}
        logged: set[str] = set()  # taken rows already in rejects.jsonl (finish may run twice)

        def finish(result: MergeResult) -> dict[str, Any]:
            tally = before.copy()
            taken_lines = []
            for source_id, other_coll, other_id in result.taken or []:
                tally.rejects[Reject.DUPLICATE_ID] += 1
                if source_id in logged:
                    continue
                logged.add(source_id)
                rec = batch.originals[source_id]
                msg = f"target id already belongs to {other_coll}/{other_id}"
                taken_lines.append(entry(rec, Reject.DUPLICATE_ID, msg))
            offset = self.rejects.write(taken_lines)
            if taken_lines:
                self.expected.remove(coll, [t[0] for t in result.taken or []])
            accepted = len(batch.rows) - len(result.taken or [])
            tally.records += batch.records
            tally.inserted += result.memories_inserted
            tally.updated += result.memories_updated
            tally.unchanged += accepted - result.memories_inserted - result.memories_updated
            tally.unchanged += len(batch.unchanged)
            tally.rejected += len(batch.rejects) + len(result.taken or [])
            tally.skipped += len(batch.skipped)
            tally.traces_inserted += result.traces_inserted
            tally.traces_updated += result.traces_updated
            tally.warnings.update(batch.warnings)
            for r in batch.rejects:
                tally.rejects[r.issue.code] += 1
            pending["tally"] = tally
            counts = tally.as_json()
            counts["rejects_offset"] = offset
            return {
                "collection": coll,
                "position": batch.last_position,
                "batches": batch_no,
                "done": False,
                "counts": counts,
            }

        if not batch.rows and not item.traces and time.monotonic() < self._next_checkpoint:
            # nothing for the target: its progress and counts ride on the next checkpoint (a
            # kill repeats at most CHECKPOINT_S of such batches, which change nothing)
            finish(MergeResult())
        else:
            self.writer.write_batch(self.run_id, item.traces, batch.rows, finish)
            self._next_checkpoint = time.monotonic() + CHECKPOINT_S
        self.tallies[coll] = pending["tally"]
        self.read_counts[coll] += batch.records

    def _write_legacy(self, item: LegacyTraces) -> None:
        """traces.json-only traces: idempotent by hash, so a replay after a kill is harmless."""
        assert self.writer is not None
        before = self.tallies.get(LEGACY, Tally()).copy()
        pending: dict[str, Tally] = {}

        def finish(result: MergeResult) -> dict[str, Any]:
            tally = before.copy()
            tally.traces_inserted += result.traces_inserted
            tally.traces_updated += result.traces_updated
            pending["tally"] = tally
            counts = tally.as_json()
            counts["rejects_offset"] = self.rejects.offset
            return {
                "collection": LEGACY,
                "position": 0,
                "batches": 1,
                "done": True,
                "counts": counts,
            }

        self.writer.write_batch(self.run_id, item.traces, [], finish)
        self.tallies[LEGACY] = pending["tally"]

    def _finish_collection(self, coll: CollectionInfo, batches: int) -> None:
        assert self.writer is not None
        counts = self.tallies.setdefault(coll.name, Tally()).as_json()
        counts["rejects_offset"] = self.rejects.offset
        self.writer.mark_done(self.run_id, coll.name, batches, counts)

    def written_ids(self, table: str = "memory_items") -> set[UUID] | None:
        """Rows of `table` this run inserted or updated: verify re-hashes their content. None
        when that is every row it accepted (an initial load): verify then re-hashes every
        row anyway, and 400,000 ids in a set cost 50 MB more than 100,000."""
        if not any(t.unchanged for t in self.tallies.values()):
            return None
        return self._writer().written_ids(self.run_id, table)

    def expected_complete(self) -> bool:
        """The run's own reading covers every accepted record: verify may use it as the
        source side (a killed run may have lost its uncommitted tail)."""
        self.expected.commit()
        return self.expected.count() == self.accepted()

    def accepted(self) -> int:
        return sum(t.inserted + t.updated + t.unchanged for t in self.tallies.values())

    def close(self) -> None:
        if self.fill is not None:
            self.fill.stop()
            self.fill.embedder.share_cores(False)  # the model process outlives the run
        self.rejects.close()
        self.expected.close()
        if self.writer is not None:
            self.writer.close()
