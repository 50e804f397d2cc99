"""Turn one page of source records into rows, rejects and skips (shared by plan and migrate)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from rbmigrate.engine.session import Session
from rbmigrate.records.codes import Reject
from rbmigrate.records.hashing import memory_hash
from rbmigrate.records.model import Issue, MemoryRow, SourceRecord
from rbmigrate.records.normalize import RuleContext, normalize
from rbmigrate.source.base import CollectionInfo


@dataclass
class RejectedRecord:
    record: SourceRecord
    issue: Issue
    workspace: str | None


@dataclass
class PreparedBatch:
    collection: str
    rows: list[MemoryRow] = field(default_factory=list)
    rejects: list[RejectedRecord] = field(default_factory=list)
    skipped: list[tuple[SourceRecord, str | None]] = field(default_factory=list)
    warnings: Counter[str] = field(default_factory=Counter)
    warning_samples: dict[str, list[str]] = field(default_factory=dict)
    last_position: int = 0
    records: int = 0
    originals: dict[str, SourceRecord] = field(default_factory=dict)
    unchanged: list[MemoryRow] = field(default_factory=list)  # already in the target, same hash


def prepare_batch(
    session: Session,
    collection: CollectionInfo,
    rules: RuleContext,
    page: list[SourceRecord],
    model_name: str,
) -> PreparedBatch:
    batch = PreparedBatch(collection=collection.name, records=len(page))
    refused = session.refused(collection.name)
    seen_ids: dict[object, str] = {}
    taken = session.index.duplicates_of(collection.name, [rec.id for rec in page])
    for rec in page:
        batch.last_position = max(batch.last_position, rec.position)
        result = normalize(rec, rules)
        workspace = result.observation.workspace_id if result.observation else None
        if result.skipped:
            batch.skipped.append((rec, workspace))
            continue
        if refused is not None:
            batch.rejects.append(
                RejectedRecord(rec, Issue(refused.code, refused.message), workspace)
            )
            continue
        if result.reject is not None or result.row is None:
            issue = result.reject or Issue(Reject.INTERNAL_ERROR, "no row produced")
            batch.rejects.append(RejectedRecord(rec, issue, workspace))
            continue
        row = result.row
        first = taken.get(rec.id)
        if first is None and row.id in seen_ids and seen_ids[row.id] != rec.id:
            first = (collection.name, seen_ids[row.id])
        if first is not None:
            batch.rejects.append(
                RejectedRecord(
                    rec,
                    Issue(
                        Reject.DUPLICATE_ID,
                        f"target id {row.id} is already taken by {first[0]}/{first[1]}",
                    ),
                    workspace,
                )
            )
            continue
        seen_ids[row.id] = rec.id
        row.source_hash = memory_hash(row, model_name)
        batch.originals[row.source_id] = rec
        for w in result.warnings:
            batch.warnings[w.code] += 1
            samples = batch.warning_samples.setdefault(w.code, [])
            if len(samples) < 3:
                samples.append(rec.id)
        batch.rows.append(row)
    return batch
