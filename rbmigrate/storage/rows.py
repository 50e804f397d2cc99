"""The rows a migration would write for one add_trace call, hashes included.

A store written through SupabaseStorage must look to a later incremental migration exactly
like the migrated Chroma copy of the same trace: so the inputs go through the Chroma layout
(DESIGN §2) and the same record rules and hashes the engine uses. Trajectory and trace
metadata are not part of the Chroma layout, so — like a migration — they are not stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from rbmigrate.records.hashing import memory_hash, trace_hash
from rbmigrate.records.ids import trace_uuid
from rbmigrate.records.model import MemoryRow, SourceRecord, TraceRow
from rbmigrate.records.normalize import RuleContext, normalize
from rbmigrate.records.traces import build_trace
from rbmigrate.storage.base import StorageError
from rbmigrate.storage.layout import chroma_record


@dataclass
class TraceRows:
    trace: TraceRow
    memories: list[MemoryRow]
    records: list[SourceRecord]  # the Chroma records of the same memories


def chroma_records(
    collection: str,
    trace_id: str,
    task: str,
    outcome: str,
    items: list[dict[str, Any]],
    workspace_id: str | None,
    timestamp: datetime,
    vectors: np.ndarray,
) -> list[SourceRecord]:
    out = []
    for i, (item, vec) in enumerate(zip(items, vectors, strict=True)):
        rid, doc, meta = chroma_record(
            trace_id=trace_id,
            task=task,
            outcome=outcome,
            item=item,
            workspace_id=workspace_id,
            timestamp=timestamp,
        )
        out.append(SourceRecord(collection, rid, doc, meta, np.asarray(vec, np.float32), i))
    return out


def rows_for(records: list[SourceRecord], ctx: RuleContext, model: str) -> TraceRows:
    """Normalize like the engine; a record the engine would reject is refused here too."""
    memories: list[MemoryRow] = []
    observations = []
    for rec in records:
        result = normalize(rec, ctx)
        if result.reject is not None or result.row is None or result.observation is None:
            issue = result.reject
            raise StorageError(
                f"memory {rec.id!r} cannot be stored: {issue.message if issue else 'no row'}"
                + (f" ({issue.code})" if issue else "")
                + "."
            )
        result.row.source_hash = memory_hash(result.row, model)
        memories.append(result.row)
        observations.append(result.observation)
    if not observations:
        raise StorageError("a trace needs at least one memory item.")
    trace = build_trace(observations[0].trace_id, observations, None, ctx)
    if trace is None:
        raise StorageError("the trace has no valid outcome (success, failure or partial).")
    trace.source_hash = trace_hash(trace, model)
    return TraceRows(trace, memories, records)


def trace_key(trace_id: str) -> str:
    """The target id a trace id maps to (uuid, or uuid5 of a readable id)."""
    return str(trace_uuid(trace_id)[0])
