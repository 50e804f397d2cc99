"""The dry run: what a migration would do to every record, written nowhere but the report.

Each source record lands in exactly one category: new, changed, unchanged, invalid (with the
code of the rule that rejects it) or skipped (not selected). Target rows no source record
maps to are target-only. The plan reads the target and never writes to it.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from rbmigrate.engine.estimate import Workload, estimate
from rbmigrate.engine.prepare import PreparedBatch, prepare_batch
from rbmigrate.engine.session import Session
from rbmigrate.records.codes import Reject, Warn

SAMPLES = 5


@dataclass
class Bucket:
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    invalid: int = 0
    skipped: int = 0
    target_only: int = 0

    def add(self, other: Bucket) -> None:
        for k in self.__dataclass_fields__:
            setattr(self, k, getattr(self, k) + getattr(other, k))

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class PlanResult:
    buckets: dict[tuple[str, str | None], Bucket] = field(
        default_factory=lambda: defaultdict(Bucket)
    )
    invalid: dict[str, dict[str, Any]] = field(default_factory=dict)
    warnings: Counter[str] = field(default_factory=Counter)
    warning_samples: dict[str, list[str]] = field(default_factory=dict)
    traces: Counter[str] = field(default_factory=Counter)
    source_records: int = 0
    non_unit: Counter[str] = field(default_factory=Counter)
    needs_embedding: int = 0
    memory_text_bytes: int = 0  # of the rows the target will hold: sizes the estimate
    trace_text_bytes: int = 0

    def total(self) -> Bucket:
        out = Bucket()
        for b in self.buckets.values():
            out.add(b)
        return out

    def note_invalid(self, code: str, source_id: str, message: str) -> None:
        entry = self.invalid.setdefault(code, {"count": 0, "samples": []})
        entry["count"] += 1
        if len(entry["samples"]) < SAMPLES:
            entry["samples"].append({"source_id": source_id, "message": message})


def _classify(session: Session, batch: PreparedBatch, result: PlanResult) -> None:
    coll = batch.collection
    for _rec, ws in batch.skipped:
        result.buckets[(coll, ws)].skipped += 1
    for rej in batch.rejects:
        result.buckets[(coll, rej.workspace)].invalid += 1
        result.note_invalid(rej.issue.code, rej.record.id, rej.issue.message)
    result.warnings.update(batch.warnings)
    for code, samples in batch.warning_samples.items():
        keep = result.warning_samples.setdefault(code, [])
        keep.extend(samples[: max(0, SAMPLES - len(keep))])
    store = session.store
    rows = batch.rows
    found = store.memories_by_source(coll, [r.source_id for r in rows]) if store else {}
    owners = store.memory_owners([r.id for r in rows if r.source_id not in found]) if store else {}
    parents = {r.parent_ref for r in rows if r.parent_ref is not None}
    known = session.index.known_memories(parents)
    if store and parents - known:
        known |= store.existing_memory_ids(parents - known)
    for row in rows:
        if row.needs_embedding:
            result.needs_embedding += 1
        owner = owners.get(row.id)
        if owner is not None and owner != (coll, row.source_id):
            result.buckets[(coll, row.workspace_id)].invalid += 1
            result.note_invalid(
                Reject.DUPLICATE_ID,
                row.source_id,
                f"target id {row.id} already belongs to {owner[0]}/{owner[1]}",
            )
            continue
        if row.parent_ref is not None and row.parent_ref not in known:
            result.warnings[Warn.PARENT_NOT_FOUND] += 1
        result.memory_text_bytes += _text_bytes(row)
        hit = found.get(row.source_id)
        if hit is None:
            result.buckets[(coll, row.workspace_id)].new += 1
        elif hit.source_hash == row.source_hash:
            result.buckets[(coll, row.workspace_id)].unchanged += 1
            result.buckets[(coll, hit.workspace_id)].target_only -= 1
        else:
            result.buckets[(coll, row.workspace_id)].changed += 1
            result.buckets[(coll, hit.workspace_id)].target_only -= 1
        if row.embedding is not None and session.source.collection(coll).space != "cosine":
            norm = float((row.embedding.astype("float64") ** 2).sum()) ** 0.5
            if abs(norm - 1.0) > 1e-3:
                result.non_unit[coll] += 1


def _text_bytes(row: Any) -> int:
    text = (row.title or "") + (row.description or "") + (row.content or "")
    extra = len(json.dumps(row.metadata)) + (
        len(json.dumps(row.error_context)) if row.error_context else 0
    )
    return len(text.encode("utf-8", "surrogatepass")) + extra


def _plan_traces(session: Session, result: PlanResult) -> None:
    store = session.store
    for page in session.index.iter_summaries():  # hash and task: no trace row decoded
        existing = store.trace_hashes([tid for tid, *_ in page]) if store else {}
        for tid, source_hash, _memories, task in page:
            have = existing.get(tid, "absent")
            key = "new" if have == "absent" else ("unchanged" if have == source_hash else "changed")
            result.traces[key] += 1
            result.trace_text_bytes += len(task.encode("utf-8", "surrogatepass"))


def run_plan(session: Session) -> PlanResult:
    ctx = session.ctx
    cfg = ctx.cfg
    result = PlanResult()
    session.scan()
    total = sum(c.count for c in session.selected)
    done = 0
    with ctx.phase("plan", total=total) as counter:
        for coll in session.selected:
            if session.store:
                for ws, n in session.store.memory_counts(coll.name).items():
                    result.buckets[(coll.name, ws)].target_only += n
            rules = session.rules(coll, reembed=cfg.migration.reembed_missing)
            for page in session.source.read_ahead(
                coll, after=0, page_size=cfg.migration.batch_size
            ):
                ctx.checkpoint()
                batch = prepare_batch(session, coll, rules, page, cfg.embedding.model)
                _classify(session, batch, result)
                done += len(page)
                result.source_records += len(page)
                ctx.progress("plan", done, total)
        counter[0] = done
    for coll in session.unselected():
        result.buckets[(coll.name, None)].skipped += coll.count
        result.source_records += coll.count
    _plan_traces(session, result)
    for code, n in session.trace_warnings.items():
        result.warnings[code] += n
    return result


def workload(result: PlanResult) -> Workload:
    t = result.total()
    traces = sum(result.traces.values())
    return Workload(
        source_records=result.source_records,
        memories=t.new + t.changed + t.unchanged,
        memory_text_bytes=result.memory_text_bytes,
        writes=t.new + t.changed,
        traces=traces,
        trace_text_bytes=result.trace_text_bytes,
        traces_to_encode=result.traces.get("new", 0) + result.traces.get("changed", 0),
        index_build=t.unchanged == 0 and t.target_only == 0,
    )


def plan_section(session: Session, result: PlanResult) -> dict[str, Any]:
    t = result.total()
    rows = []
    for (coll, ws), b in sorted(result.buckets.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        rows.append({"collection": coll, "workspace": ws, **b.as_dict()})
    problems = [p.as_dict() for p in session.problems]
    for coll, n in result.non_unit.items():
        info = session.source.collection(coll)
        problems.append(
            {
                "collection": coll,
                "code": "space_mismatch",
                "refused": False,
                "message": f"{n} vectors in {coll} are not unit length and it uses {info.space}; the "
                "target ranks by cosine, so the order of results may differ",
            }
        )
    return {
        "new": t.new,
        "changed": t.changed,
        "unchanged": t.unchanged,
        "target_only": t.target_only,
        "invalid": t.invalid,
        "skipped": t.skipped,
        "by_collection": rows,
        "invalid_by_code": result.invalid,
        "traces": {k: result.traces.get(k, 0) for k in ("new", "changed", "unchanged")},
        "needs_embedding": result.needs_embedding,
        "collection_problems": problems,
        "schema": session.schema.as_dict() if session.schema else None,
        "dimension": session.dimension,
        "estimate_s": (est := estimate(workload(result), session.dimension))["seconds"],
        "estimate": est,
    }
