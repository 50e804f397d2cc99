"""source_hash: sha256 of the canonical normalized row plus the float32 bytes of the vector.

Plan, incremental re-runs and verify all compare these; change the canonical form only
with a new version prefix, or every row of every user's target would look changed.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import numpy as np

from rbmigrate.records.model import MemoryRow, TraceRow

VERSION = b"rbm1"


def _default(value: Any) -> Any:
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    raise TypeError(f"not JSON: {type(value).__name__}")


def _plain(value: Any) -> Any:
    """What _default makes of a UUID or a datetime, anything else as it is."""
    return _default(value) if isinstance(value, UUID | datetime) else value


def _as_jsonb_reads_back(value: Any) -> Any:
    """A float written with a positive exponent (1e+16) comes back from jsonb as the integer
    it denotes (10000000000000000); hash that integer so source and read-back agree. Only such
    floats change, and their rows could never verify before, so no new version prefix."""
    if isinstance(value, float) and "e+" in repr(value):
        return int(Decimal(repr(value)))
    if isinstance(value, dict):
        return {k: _as_jsonb_reads_back(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_as_jsonb_reads_back(v) for v in value]
    return value


def _dumps(value: Any) -> str:
    return json.dumps(
        value,
        default=_default,
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
        allow_nan=False,
    )


def canonical_json(value: Any) -> bytes:
    text = _dumps(value)
    if "e+" in text:  # rare: walk the value only when a big float may be in it
        text = _dumps(_as_jsonb_reads_back(value))
    return text.encode("utf-8")


def vector_bytes(vec: np.ndarray) -> bytes:
    return np.asarray(vec, dtype="<f4").tobytes()


def memory_hash(row: MemoryRow, model_name: str = "") -> str:
    """Hash of everything the target stores for this memory. A row that will be re-embedded
    hashes the model's name instead of a vector, so a plan can classify it without a model."""
    # ids and the time as _default would write them: the encoder then never calls back
    fields = {
        "id": _plain(row.id),
        "trace_id": _plain(row.trace_id),
        "title": row.title,
        "description": row.description,
        "content": row.content,
        "error_context": row.error_context,
        "pattern_tags": row.pattern_tags,
        "difficulty_level": row.difficulty_level,
        "domain_category": row.domain_category,
        "parent_ref": _plain(row.parent_ref),
        "evolution_stage": row.evolution_stage,
        "workspace_id": row.workspace_id,
        "created_at": _plain(row.created_at),
        "source_id": row.source_id,
        "source_collection": row.source_collection,
        "metadata": row.metadata,
    }
    h = hashlib.sha256(VERSION)
    h.update(b"\nmemory\n")
    h.update(canonical_json(fields))
    h.update(b"\n")
    if row.needs_embedding or row.embedding is None:
        h.update(b"reembed:" + model_name.encode("utf-8"))
    else:
        h.update(vector_bytes(row.embedding))
    return h.hexdigest()


def trace_hash(row: TraceRow, model_name: str) -> str:
    """The task embedding is derived from the task with `model_name`; hash those instead."""
    fields = {
        "id": _plain(row.id),
        "task": row.task,
        "trajectory": row.trajectory,
        "outcome": row.outcome,
        "metadata": row.metadata,
        "parent_trace_id": _plain(row.parent_trace_id),
        "timestamp": _plain(row.timestamp),
        "num_memories": row.num_memories,
        "workspace_id": row.workspace_id,
        "source_id": row.source_id,
        "model": model_name,
    }
    h = hashlib.sha256(VERSION)
    h.update(b"\ntrace\n")
    h.update(canonical_json(fields))
    return h.hexdigest()
