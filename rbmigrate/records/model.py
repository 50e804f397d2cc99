"""The record shapes that flow through the pipeline: source record -> memory/trace rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import numpy as np
import numpy.typing as npt

Vector = npt.NDArray[np.float32]


@dataclass(slots=True)
class SourceRecord:
    """One Chroma record as read, untouched. `position` orders records within a collection
    (the reader's resume point), and `embedding` is float32 (cast from Chroma's float64)."""

    collection: str
    id: str
    document: str | None
    metadata: dict[str, Any] | None
    embedding: Vector | None
    position: int = 0

    def original(self) -> dict[str, Any]:
        """The record as it goes into rejects.jsonl: enough to replay it later."""
        return {
            "id": self.id,
            "document": self.document,
            "metadata": self.metadata,
            "embedding": None if self.embedding is None else [float(x) for x in self.embedding],
        }


@dataclass(slots=True)
class Issue:
    code: str
    message: str


@dataclass(slots=True)
class MemoryRow:
    """A memory_items row before it is written. `parent_ref` is the parent the source asked
    for; the target keeps it only if that memory exists (never a foreign-key failure)."""

    id: UUID
    trace_id: UUID
    title: str
    description: str | None
    content: str
    embedding: Vector | None
    error_context: Any
    pattern_tags: list[str]
    difficulty_level: str | None
    domain_category: str | None
    parent_ref: UUID | None
    evolution_stage: int
    workspace_id: str | None
    created_at: datetime
    source_id: str
    source_collection: str
    metadata: dict[str, Any]
    needs_embedding: bool = False
    source_hash: str = ""


@dataclass(slots=True)
class TraceObservation:
    """What one memory's metadata says about its trace (pass 1 reads only these)."""

    trace_id: UUID
    raw_trace_id: str | None
    synthetic: bool
    task: str
    outcome: str | None
    timestamp: datetime | None
    workspace_id: str | None
    collection: str
    source_id: str
    position: int


@dataclass(slots=True)
class TraceRow:
    id: UUID
    task: str
    trajectory: list[Any]
    outcome: str
    metadata: dict[str, Any]
    parent_trace_id: UUID | None
    timestamp: datetime
    num_memories: int
    workspace_id: str | None
    source_id: str | None
    source_hash: str = ""
    warnings: list[Issue] = field(default_factory=list)


@dataclass(slots=True)
class Normalized:
    """The outcome of the record rules for one source record: a row, or a reject."""

    record: SourceRecord
    row: MemoryRow | None
    observation: TraceObservation | None
    warnings: list[Issue] = field(default_factory=list)
    reject: Issue | None = None
    skipped: bool = False
