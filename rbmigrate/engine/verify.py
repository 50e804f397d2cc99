"""Verify: the target holds exactly what the source holds, hash for hash.

For every record the rules accept, the target must have a row with that source id whose
stored hash *and* whose content, hashed again, equal the source record's hash (missing /
mismatched); target rows of the collection that no source record maps to are extra.
Counts are compared per collection and workspace; traces are checked the same way.

The source side is either this run's own reading of the snapshot (the verify that closes a
migration) or a fresh pass over the source (`rbmigrate verify`, and always with `deep`,
which also compares every vector element by element).
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import numpy as np

from rbmigrate.engine.expected import ExpectedRows
from rbmigrate.engine.prepare import prepare_batch
from rbmigrate.engine.session import Session
from rbmigrate.engine.traceindex import TraceIndex
from rbmigrate.records.hashing import memory_hash, trace_hash
from rbmigrate.records.model import MemoryRow
from rbmigrate.target.readback import memory_from_row, trace_from_row
from rbmigrate.target.transport import TargetStore

SAMPLES = 5
RUN_READING = "this run's reading of the snapshot"  # the source side of a closing verify

# (source_id, expected hash, workspace, source row when read fresh)
Expected = tuple[str, str, str | None, MemoryRow | None]


@dataclass
class VerifyResult:
    checked: int = 0
    missing: int = 0
    mismatched: int = 0
    extra: int = 0
    vectors_compared: int = 0
    vector_mismatches: int = 0
    deep: bool = False
    source: str = "snapshot"
    samples: dict[str, list[str]] = field(default_factory=dict)
    expected: Counter[tuple[str, str | None]] = field(default_factory=Counter)
    found: Counter[tuple[str, str | None]] = field(default_factory=Counter)
    traces: Counter[str] = field(default_factory=Counter)

    def note(self, kind: str, what: str) -> None:
        bucket = self.samples.setdefault(kind, [])
        if len(bucket) < SAMPLES:
            bucket.append(what)

    @property
    def ok(self) -> bool:
        return not (
            self.missing
            or self.mismatched
            or self.vector_mismatches
            or self.traces["missing"]
            or self.traces["mismatched"]
        )

    def as_dict(self, strict_extra: bool = False) -> dict[str, Any]:
        by_collection = []
        for key in sorted(set(self.expected) | set(self.found), key=lambda k: (k[0], k[1] or "")):
            by_collection.append(
                {
                    "collection": key[0],
                    "workspace": key[1],
                    "source": self.expected[key],
                    "target": self.found[key],
                }
            )
        return {
            "ok": self.ok and not (strict_extra and self.extra),
            "checked": self.checked,
            "missing": self.missing,
            "mismatched": self.mismatched,
            "extra": self.extra,
            "deep": self.deep,
            "source": self.source,
            "vectors_compared": self.vectors_compared,
            "vector_mismatches": self.vector_mismatches,
            "samples": self.samples,
            "by_collection": by_collection,
            "traces": {
                k: self.traces.get(k, 0)
                for k in ("checked", "missing", "mismatched", "no_embedding")
            },
        }


def _fresh(
    session: Session, coll: Any, reembed: bool, progress: bool = True
) -> Iterator[list[Expected]]:
    cfg = session.ctx.cfg
    rules = session.rules(coll, reembed=reembed)
    for page in session.source.read_ahead(coll, after=0, page_size=cfg.migration.batch_size):
        batch = prepare_batch(session, coll, rules, page, cfg.embedding.model)
        yield [(r.source_id, r.source_hash, r.workspace_id, r) for r in batch.rows]
        if progress:
            session.ctx.progress("verify", 0, None)  # keeps a UI alive on huge pages


def _cached(expected: ExpectedRows, coll: Any, size: int) -> Iterator[list[Expected]]:
    for page in expected.pages(coll.name, size):
        yield [(sid, h, ws, None) for sid, h, ws in page]


def run_verify(
    session: Session,
    store: TargetStore,
    *,
    deep: bool = False,
    reembed: bool = True,
    expected: ExpectedRows | None = None,
    content_ids: set[Any] | None = None,
    trace_content_ids: set[UUID] | None = None,
    beside: VerifyResult | None = None,
) -> VerifyResult:
    """`content_ids` / `trace_content_ids`: memory / trace rows whose content is hashed again
    (None: every row); the others are checked by their stored hash (the verify closing a
    run re-hashes what the run wrote). `beside`: what verify_beside checked while the task
    encoder ran (every memory, every trace but its task embedding); only the embeddings are
    left."""
    ctx = session.ctx
    use_cache = expected is not None and not deep
    result = (
        copy.deepcopy(beside)
        if beside is not None
        else VerifyResult(deep=deep, source=RUN_READING if use_cache else "snapshot")
    )
    if not use_cache:
        session.scan()
    total = sum(c.count for c in session.selected)
    with ctx.phase("verify", total=total) as counter:
        if beside is None:
            verify_memories(
                session,
                store,
                result,
                reembed=reembed,
                expected=expected if use_cache else None,
                content_ids=content_ids,
            )
            verify_traces(session, store, result, trace_content_ids)
        else:
            count_missing_embeddings(session, store, result)
        counter[0] = result.checked
    return result


def verify_beside(
    session: Session,
    store: TargetStore,
    result: VerifyResult,
    *,
    reembed: bool,
    expected: ExpectedRows,
    index: TraceIndex,
    content_ids: set[Any] | None,
    trace_content_ids: set[UUID] | None,
) -> None:
    """The closing verify but the task embeddings, while the encoder fills them: nothing
    else changes a row after the writes. With a connection and readers of its own."""
    verify_memories(
        session,
        store,
        result,
        reembed=reembed,
        expected=expected,
        content_ids=content_ids,
        progress=False,
    )
    verify_traces(session, store, result, trace_content_ids, index=index, embeddings=False)


def verify_memories(
    session: Session,
    store: TargetStore,
    result: VerifyResult,
    *,
    reembed: bool = True,
    expected: ExpectedRows | None = None,
    content_ids: set[Any] | None = None,
    progress: bool = True,
) -> None:
    """Every accepted memory against its target row (from `expected`, this run's reading,
    or from a fresh pass over the snapshot); `progress=False` when it runs beside another
    phase."""
    ctx = session.ctx
    cfg = ctx.cfg
    model = cfg.embedding.model
    deep = result.deep
    total = sum(c.count for c in session.selected)
    for coll in session.selected:
        seen = 0
        pages = (
            _cached(expected, coll, cfg.migration.batch_size)
            if expected is not None
            else _fresh(session, coll, reembed, progress)
        )
        for page in pages:
            ctx.checkpoint()
            ids = [e[0] for e in page]
            if content_ids is None:  # every row is read whole: it carries its hash
                full = store.fetch_memories(coll.name, ids)
                stored_rows = {sid: (r[0], r[16], r[12]) for sid, r in full.items()}
            else:
                stored_rows = store.fetch_memory_hashes(coll.name, ids)
                wanted = [sid for sid, (rid, _h, _w) in stored_rows.items() if rid in content_ids]
                full = store.fetch_memories(coll.name, wanted) if wanted else {}
            for source_id, want, workspace, row in page:
                result.checked += 1
                result.expected[(coll.name, workspace)] += 1
                light = stored_rows.get(source_id)
                if light is None:
                    result.missing += 1
                    result.note("missing", f"{coll.name}/{source_id}")
                    continue
                seen += 1
                _rid, stored, target_ws = light
                result.found[(coll.name, target_ws)] += 1
                got = full.get(source_id)
                back = memory_from_row(got)[0] if got is not None else None
                if stored != want or (back is not None and memory_hash(back, model) != want):
                    result.mismatched += 1
                    result.note("mismatched", f"{coll.name}/{source_id}")
                if (
                    deep
                    and row is not None
                    and row.embedding is not None
                    and not row.needs_embedding
                ):
                    result.vectors_compared += 1
                    if (
                        back is None
                        or back.embedding is None
                        or not np.array_equal(back.embedding, row.embedding)
                    ):
                        result.vector_mismatches += 1
                        result.note("vector_mismatch", f"{coll.name}/{source_id}")
            if progress:
                ctx.progress("verify", result.checked, total)
        result.extra += max(0, store.count_memories(coll.name) - seen)


def verify_traces(
    session: Session,
    store: TargetStore,
    result: VerifyResult,
    content_ids: set[UUID] | None,
    *,
    index: TraceIndex | None = None,
    embeddings: bool = True,
) -> None:
    """Every trace an accepted memory refers to must be in the target with its hash (and,
    with `embeddings`, its task embedding)."""
    model = session.ctx.cfg.embedding.model
    names = [c.name for c in session.selected]
    for page in (index or session.index).iter_summaries():
        needed = store.referenced_among(names, [s[0] for s in page])
        wanted = [(tid, h) for tid, h, memories, _task in page if tid in needed or memories == 0]
        if not wanted:
            continue
        again = [tid for tid, _h in wanted if content_ids is None or tid in content_ids]
        rows = store.fetch_traces(again) if again else {}
        full = {tid: trace_from_row(r) for tid, r in rows.items()}
        # the whole rows carry hash and embedding flag; ask for them only of the rest
        states: dict[UUID, tuple[str | None, bool]] = (
            {tid: (stored, has) for tid, (_row, stored, has) in full.items()}
            if len(again) == len(wanted)
            else store.trace_states([tid for tid, _h in wanted])
        )
        for tid, want in wanted:
            result.traces["checked"] += 1
            state = states.get(tid)
            if state is None:
                result.traces["missing"] += 1
                result.note("trace_missing", str(tid))
                continue
            stored, has_embedding = state
            back = full[tid][0] if tid in full else None
            if stored != want or (back is not None and trace_hash(back, model) != want):
                result.traces["mismatched"] += 1
                result.note("trace_mismatched", str(tid))
            if embeddings and not has_embedding:
                result.traces["no_embedding"] += 1


def count_missing_embeddings(session: Session, store: TargetStore, result: VerifyResult) -> None:
    """The traces a memory refers to that still lack a task embedding (after the fill)."""
    names = [c.name for c in session.selected]
    for page in session.index.iter_summaries():
        states = store.trace_states([s[0] for s in page])
        lacking = {
            tid: memories for tid, _h, memories, _task in page if not states.get(tid, ("", True))[1]
        }
        if lacking:
            needed = store.referenced_among(names, list(lacking))
            result.traces["no_embedding"] += sum(
                1 for tid, memories in lacking.items() if tid in needed or memories == 0
            )
