"""Migrate: read, normalize and embed ahead in one thread; COPY + merge + checkpoint in another.

A reader thread pages through the snapshot, applies the record rules, re-embeds records
without vectors and encodes the tasks of the traces each batch introduces (the CPU work);
the main thread writes each batch in one transaction that also moves the checkpoint (the
database work). A bounded queue lets both run at once. Any failure, a kill or a lost
connection leaves the target at a committed checkpoint; the run resumes from there with no
duplicate and no gap.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from uuid import UUID

import numpy as np
import psycopg

from rbmigrate.embeddings import Embedder
from rbmigrate.engine.expected import ExpectedRows
from rbmigrate.engine.prepare import PreparedBatch, prepare_batch
from rbmigrate.engine.rejects import RejectsLog, entry
from rbmigrate.engine.session import Session
from rbmigrate.engine.task_embeddings import TaskEmbeddingFill
from rbmigrate.errors import Interrupted, TargetConnectionError
from rbmigrate.records.codes import Reject
from rbmigrate.records.model import MemoryRow, SourceRecord, TraceRow
from rbmigrate.source.base import CollectionInfo
from rbmigrate.target.connection import ResolvedTarget
from rbmigrate.target.postgres import PostgresStore
from rbmigrate.target.writer import MergeResult, PostgresWriter

T = TypeVar("T")
LEGACY = "(traces.json)"
QUEUE_DEPTH = 2
TASK_CACHE = 20000
RECONNECT_DELAYS = (1, 2, 4, 8, 15, 30, 30, 30)


@dataclass
class WorkItem:
    collection: CollectionInfo
    batch: PreparedBatch
    traces: list[tuple[TraceRow, np.ndarray | None]]


@dataclass
class AfterWrite:
    parents_missing: int = 0
    deleted: int | None = None
    built: list[str] = field(default_factory=list)
    tasks_encoded: int = 0


@dataclass
class LegacyTraces:
    """Traces from traces.json that no migrated memory refers to; written last."""

    traces: list[tuple[TraceRow, np.ndarray | None]]


@dataclass
class CollectionDone:
    collection: CollectionInfo


@dataclass
class Failure:
    error: BaseException


END = object()


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


def compose_document(row: MemoryRow) -> str:
    return f"{row.title}\n{row.description or ''}\n{row.content}"


class BatchProducer(threading.Thread):
    """The CPU side: read, normalize, embed. Talks to the writer only through the queue."""

    def __init__(
        self,
        session: Session,
        plan: list[tuple[CollectionInfo, int]],
        lookup: PostgresStore,
        embedder: Embedder | None,
        out: queue.Queue[Any],
        reembed: bool,
        records: list[SourceRecord] | None = None,
    ) -> None:
        super().__init__(name="rbmigrate-reader", daemon=True)
        self.session = session
        self.plan = plan
        self.lookup = lookup
        self.embedder = embedder
        self.out = out
        self.reembed = reembed
        self.records = records
        self.stop = threading.Event()
        self.scheduled: set[UUID] = set()
        self.empty: set[str] = set()  # collections with no target rows at the start: no lookups

    def put(self, item: Any) -> bool:
        while not self.stop.is_set():
            try:
                self.out.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def run(self) -> None:
        try:
            cfg = self.session.ctx.cfg
            for coll, after in self.plan:
                rules = self.session.rules(coll, reembed=self.reembed)
                for page in self._pages(coll, after, cfg.migration.batch_size):
                    if self.stop.is_set():
                        return
                    batch = prepare_batch(self.session, coll, rules, page, cfg.embedding.model)
                    traces = self._traces_for(batch.rows)
                    if coll.name not in self.empty:
                        self._drop_unchanged(coll.name, batch)
                    self._embed_missing(batch.rows)
                    if not self.put(WorkItem(coll, batch, traces)):
                        return
                if not self.put(CollectionDone(coll)):
                    return
            leftovers = self._unreferenced_traces()
            if leftovers and not self.put(LegacyTraces(leftovers)):
                return
            self.put(END)
        except BaseException as exc:  # hand everything to the writer, which decides
            self.put(Failure(exc))

    def _pages(self, coll: CollectionInfo, after: int, size: int) -> Any:
        if self.records is None:
            return self.session.source.reader.pages(
                coll, after=after, with_embeddings=True, page_size=size
            )
        mine = [r for r in self.records if r.collection == coll.name and r.position > after]
        return (mine[i : i + size] for i in range(0, len(mine), size))

    def _embed_missing(self, rows: list[MemoryRow]) -> None:
        need = [r for r in rows if r.needs_embedding]
        if need and self.embedder is not None:
            vectors = self.embedder.encode([compose_document(r) for r in need])
            for row, vec in zip(need, vectors, strict=True):
                row.embedding = vec

    def _drop_unchanged(self, collection: str, batch: PreparedBatch) -> None:
        """Rows the target already holds with the same hash never reach COPY (a re-run of an
        unchanged store writes nothing and costs one lookup per batch)."""
        found = self.lookup.memories_by_source(collection, [r.source_id for r in batch.rows])
        keep: list[MemoryRow] = []
        for row in batch.rows:
            hit = found.get(row.source_id)
            if hit is not None and hit.source_hash == row.source_hash and hit.id == row.id:
                batch.unchanged.append(row)
            else:
                keep.append(row)
        batch.rows = keep

    def _traces_for(self, rows: list[MemoryRow]) -> list[tuple[TraceRow, np.ndarray | None]]:
        wanted = {r.trace_id for r in rows} - self.scheduled
        if not wanted:
            return []
        found = self.session.index.traces(wanted)
        existing = self.lookup.trace_hashes(list(found))
        todo = [t for t in found.values() if existing.get(t.id, "absent") != t.source_hash]
        self.scheduled |= wanted
        return [(t, None) for t in todo]  # task embeddings come from TaskEmbeddingFill

    def _unreferenced_traces(self) -> list[tuple[TraceRow, np.ndarray | None]]:
        """Traces from traces.json that no migrated memory refers to."""
        out: list[TraceRow] = []
        for page in self.session.index.iter_traces():
            out.extend(t for t in page if t.num_memories == 0 and t.id not in self.scheduled)
        if not out:
            return []
        existing = self.lookup.trace_hashes([t.id for t in out])
        return [(t, None) for t in out if existing.get(t.id, "absent") != t.source_hash]


def transient(exc: BaseException) -> bool:
    """A lost or reset connection; worth reconnecting and resuming from the checkpoint."""
    return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError) and not isinstance(
        exc, psycopg.errors.InsufficientPrivilege
    )


class Migration:
    """One migrate run over a direct PostgreSQL connection."""

    def __init__(
        self,
        session: Session,
        resolved: ResolvedTarget,
        run_id: str,
        embedder: Embedder | None,
        records: list[SourceRecord] | None = None,
    ) -> None:
        self.session = session
        self.ctx = session.ctx
        self.cfg = session.ctx.cfg
        self.resolved = resolved
        self.run_id = run_id
        self.embedder = embedder
        self.fill: TaskEmbeddingFill | None = None
        self.records = records
        self.tallies: dict[str, Tally] = {}
        self.rejects = RejectsLog(self.ctx.run_dir / "rejects.jsonl")
        self.expected = ExpectedRows(self.ctx.run_dir / "expected.sqlite")
        self.writer: PostgresWriter | None = None
        self.read_counts: Counter[str] = Counter()

    # --- connections ---------------------------------------------------------------------
    def connect_writer(self, fp: str) -> PostgresWriter:
        from rbmigrate.engine.runs import try_lock

        writer = PostgresWriter(self.resolved.dsn, self.cfg.target.schema)
        if not try_lock(writer.conn, fp):
            writer.close()
            from rbmigrate.engine.runs import RunBusy

            raise RunBusy(
                "another rbmigrate run is migrating this source into this target right now.",
                hint="wait for it to finish, or stop it; then run again (it resumes).",
            )
        writer.conn.commit()
        return writer

    def reconnect(self, fp: str, error: BaseException) -> PostgresWriter:
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
                if not transient(exc):
                    raise
                self.writer = self.reconnect(fp, exc)
                if self.session.store is not None:
                    self.session.store.reconnect()

    def set_run(self, **fields: Any) -> None:
        assert self.writer is not None
        self.writer.set_run(self.run_id, **fields)

    def after_write(self, fp: str, *, with_deletes: bool) -> AfterWrite:
        """Link late parents, delete what the source lost (if asked), fill task embeddings
        while the memory indexes build, then build the trace index."""
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
        if self.fill is not None:
            # torch and an HNSW build on the same two cores slow each other more than they
            # gain: fill the task embeddings first, then build every deferred index
            self.fill.start_updating()
            self.set_run(phase="embed")
            with self.ctx.phase("embed", total=self.fill.stats.needed, unit="tasks") as counter:
                while self.fill.running():
                    self.ctx.checkpoint()
                    self.ctx.progress(
                        "embed", self.fill.stats.updated, self.fill.stats.needed, "tasks"
                    )
                    time.sleep(0.2)
                stats = self.fill.join()
                counter[0] = stats.updated
                out.tasks_encoded = stats.encoded
        out.built += self._build(fp, None)
        return out

    def _writer(self) -> PostgresWriter:
        assert self.writer is not None
        return self.writer

    def _build(self, fp: str, tables: tuple[str, ...] | None) -> list[str]:
        """Build the run's deferred indexes (of `tables`, or all that remain)."""
        from rbmigrate.target.indexes import build_indexes, pending_indexes

        schema = self.cfg.target.schema
        pending = self.resilient(
            fp, lambda: pending_indexes(self._writer().conn, schema, self.run_id)
        )
        if not [p for p in pending if tables is None or p["table"] in tables]:
            return []
        self.set_run(phase="index")
        with self.ctx.phase("index", unit="tuples") as counter:
            built = self.resilient(
                fp,
                lambda: build_indexes(
                    self.resolved.dsn,
                    schema,
                    self.run_id,
                    lambda name, done, total: self.ctx.progress("index", done, total, "tuples"),
                    tables=tables,
                ),
            )
            counter[0] = len(built)
        return built

    def start_fill(self) -> None:
        """Begin encoding the trace tasks that need an embedding, before anything is written."""
        from rbmigrate.engine.task_embeddings import TaskEmbeddingFill, traces_needing_embeddings

        if self.embedder is None:
            return
        assert self.session.store is not None
        needed = traces_needing_embeddings(
            self.session, self.session.store.conn, self.cfg.target.schema
        )
        if not needed:
            return
        self.embedder.check_dimension(self.session.dimension, "the target")
        self.fill = TaskEmbeddingFill(
            self.embedder,
            self.resolved.dsn,
            self.cfg.target.schema,
            needed,
            self.ctx.control.cancel,
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
            except BaseException as exc:
                if not transient(exc):
                    raise
                self.writer = self.reconnect(fp, exc)

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
        lookup = PostgresStore(self.resolved, self.cfg.target.schema)
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
        )
        producer.empty = {c.name for c, _after in plan if not lookup.memory_counts(c.name)}
        total = sum(c.count for c in self.session.selected)
        done = sum(t.records for t in self.tallies.values())
        producer.start()
        try:
            while True:
                self.ctx.checkpoint()
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
        self.expected.add(batch.rows)
        self.expected.add(batch.unchanged)
        pending: dict[str, Tally] = {}

        def finish(result: MergeResult) -> dict[str, Any]:
            tally = before.copy()
            taken_lines = []
            for source_id, other_coll, other_id in result.taken or []:
                rec = batch.originals[source_id]
                msg = f"target id already belongs to {other_coll}/{other_id}"
                taken_lines.append(entry(rec, Reject.DUPLICATE_ID, msg))
                tally.rejects[Reject.DUPLICATE_ID] += 1
            offset = self.rejects.write(taken_lines)
            if result.taken:
                self.expected.remove(coll, [t[0] for t in result.taken])
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

        self.writer.write_batch(self.run_id, item.traces, batch.rows, finish)
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

    def written_ids(self) -> set[UUID]:
        """Memory rows this run inserted or updated: verify re-hashes their content."""
        from psycopg import sql

        conn = self._writer().conn
        rows = conn.execute(
            sql.SQL(
                "SELECT row_id FROM {}.rbmigrate_changes WHERE run_id = %s AND table_name = 'memory_items'"
                " AND action IN ('insert', 'update')"
            ).format(sql.Identifier(self.cfg.target.schema)),
            (self.run_id,),
        ).fetchall()
        conn.commit()
        return {r[0] for r in rows}

    def accepted(self) -> int:
        return sum(t.inserted + t.updated + t.unchanged for t in self.tallies.values())

    def close(self) -> None:
        if self.fill is not None:
            self.fill.stop()
        self.rejects.close()
        self.expected.close()
        if self.writer is not None:
            self.writer.close()
