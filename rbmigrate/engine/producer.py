"""The migration's CPU side: read, normalize and embed ahead of the writer, in its own thread.

A reader thread pages through the snapshot, applies the record rules, re-embeds records
without vectors and finds the traces each batch introduces; the main thread writes. A
bounded queue lets both work at once. Two things differ by transport:

* over REST a batch is one HTTP request, so pages are cut to a byte budget (the API in front
  of PostgREST limits request bodies); each piece is a batch with its own checkpoint;
* over REST the trace task embeddings are encoded here, before the traces are written
  (there is no cheap way to fill them afterwards: PostgREST cannot update many rows with
  different values in one request). Over a direct connection a separate fill does it later,
  off the write path.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import numpy as np

from rbmigrate.embeddings import TextEncoder
from rbmigrate.engine.prepare import PreparedBatch, prepare_batch
from rbmigrate.engine.session import Session
from rbmigrate.records.model import MemoryRow, SourceRecord, TraceRow
from rbmigrate.source.base import CollectionInfo
from rbmigrate.target.transport import TargetStore

TASK_CACHE = 20000


@dataclass
class WorkItem:
    collection: CollectionInfo
    batch: PreparedBatch
    traces: list[tuple[TraceRow, np.ndarray | None]]


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
class RestOptions:
    """What the REST transport asks of the producer (None over a direct connection)."""

    max_bytes: int  # request body budget per batch
    task_embedder: TextEncoder | None  # encode trace tasks inline
    unembedded: set[UUID] = field(default_factory=set)  # target traces lacking an embedding


def compose_document(row: MemoryRow) -> str:
    return f"{row.title}\n{row.description or ''}\n{row.content}"


def record_bytes(rec: SourceRecord, dimension: int) -> int:
    """About what a record weighs in a JSON request: its texts twice over (document and
    memory_data repeat them), the vector as text (~13 characters an element), overhead."""
    meta = len(json.dumps(rec.metadata, default=str)) if rec.metadata else 0
    vector = 13 * (len(rec.embedding) if rec.embedding is not None else dimension)
    return 2 * len((rec.document or "").encode("utf-8", "surrogatepass")) + meta + vector + 400


def cut(page: list[SourceRecord], budget: int, dimension: int) -> Iterator[list[SourceRecord]]:
    """Consecutive pieces of a page, each within `budget` bytes (one record at least)."""
    piece: list[SourceRecord] = []
    size = 0
    for rec in page:
        cost = record_bytes(rec, dimension)
        if piece and size + cost > budget:
            yield piece
            piece, size = [], 0
        piece.append(rec)
        size += cost
    if piece:
        yield piece


class BatchProducer(threading.Thread):
    """The CPU side: read, normalize, embed. Talks to the writer only through the queue."""

    def __init__(
        self,
        session: Session,
        plan: list[tuple[CollectionInfo, int]],
        lookup: TargetStore,
        embedder: TextEncoder | None,
        out: queue.Queue[Any],
        reembed: bool,
        records: list[SourceRecord] | None = None,
        rest: RestOptions | None = None,
    ) -> None:
        super().__init__(name="rbmigrate-reader", daemon=True)
        self.session = session
        self.plan = plan
        self.lookup = lookup
        self.embedder = embedder
        self.out = out
        self.reembed = reembed
        self.records = records
        self.rest = rest
        self.stop = threading.Event()
        self.empty: set[str] = set()  # collections with no target rows at the start: no lookups
        self.task_vectors: dict[str, np.ndarray] = {}

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
            self.session.index.forget_seen()
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

    def _pages(self, coll: CollectionInfo, after: int, size: int) -> Iterator[list[SourceRecord]]:
        if self.records is None:
            pages = self.session.source.read_ahead(coll, after=after, page_size=size)
        else:
            mine = [r for r in self.records if r.collection == coll.name and r.position > after]
            pages = (mine[i : i + size] for i in range(0, len(mine), size))
        if self.rest is None:
            yield from pages
            return
        for page in pages:
            yield from cut(page, self.rest.max_bytes, self.session.dimension)

    def _embed_missing(self, rows: list[MemoryRow]) -> None:
        need = [r for r in rows if r.needs_embedding]
        if need and self.embedder is not None:
            vectors = self.embedder.encode([compose_document(r) for r in need])
            for row, vec in zip(need, vectors, strict=True):
                row.embedding = vec

    def _drop_unchanged(self, collection: str, batch: PreparedBatch) -> None:
        """Rows the target already holds with the same hash never reach the writer (a re-run
        of an unchanged store writes nothing and costs one lookup per batch)."""
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
        """The traces this batch introduces that the target lacks or holds with another hash;
        hashes are compared first, so an unchanged trace is never decoded."""
        wanted = self.session.index.first_seen({r.trace_id for r in rows})
        if not wanted:
            return []
        hashes = self.session.index.hashes(wanted)
        existing = self.lookup.trace_hashes(list(hashes))
        todo = [tid for tid, h in hashes.items() if self._needs_writing(tid, h, existing)]
        found = self.session.index.traces(todo) if todo else {}
        return self._with_task_vectors([found[tid] for tid in todo])

    def _needs_writing(self, tid: UUID, source_hash: str, existing: dict[UUID, str | None]) -> bool:
        if existing.get(tid, "absent") != source_hash:
            return True
        # over REST an unchanged trace without its task embedding is sent again, with it
        return (
            self.rest is not None
            and self.rest.task_embedder is not None
            and tid in self.rest.unembedded
        )

    def _with_task_vectors(
        self, traces: list[TraceRow]
    ) -> list[tuple[TraceRow, np.ndarray | None]]:
        """Over REST, each trace with its task embedding (tasks repeat: encoded once each);
        over a direct connection none (task_embeddings.TaskEmbeddingFill fills them)."""
        embedder = self.rest.task_embedder if self.rest is not None else None
        if embedder is None or not traces:
            return [(t, None) for t in traces]
        tasks = list(dict.fromkeys(t.task for t in traces))
        if len(self.task_vectors) + len(tasks) > TASK_CACHE:
            self.task_vectors.clear()
        fresh = [task for task in tasks if task not in self.task_vectors]
        if fresh:
            self.task_vectors.update(zip(fresh, embedder.encode(fresh), strict=True))
        return [(t, self.task_vectors[t.task]) for t in traces]

    def _unreferenced_traces(self) -> list[tuple[TraceRow, np.ndarray | None]]:
        """Traces from traces.json that no migrated memory refers to."""
        out: list[TraceRow] = []
        for page in self.session.index.unreferenced():
            out.extend(page)  # no memory refers to them: never written by a batch
        if not out:
            return []
        existing = self.lookup.trace_hashes([t.id for t in out])
        return self._with_task_vectors(
            [t for t in out if self._needs_writing(t.id, t.source_hash, existing)]
        )
