"""The storage interface a ReasoningBank server talks to, and what it returns.

Backends conform to one interface so switching stores is one setting. Inputs are what the
upstream server passes (memory items as dicts or objects with the same attributes); results
are `MemoryItem`s with a similarity score on one scale (cosine similarity).
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rbmigrate.errors import RbmigrateError

ITEM_FIELDS = (
    "id",
    "title",
    "description",
    "content",
    "error_context",
    "parent_memory_id",
    "derived_from",
    "evolution_stage",
    "pattern_tags",
    "difficulty_level",
    "domain_category",
    "created_at",
)
STAT_KEYS = (
    "total_traces",
    "success_traces",
    "failure_traces",
    "total_memories",
    "memories_with_errors",
    "success_rate",
)


class StorageError(RbmigrateError):
    default_title = "Storage error"


class RetrievalError(StorageError):
    default_title = "Retrieval error"


class StorageEmbeddingError(StorageError):
    default_title = "Embedding error"


@dataclass
class MemoryItem:
    id: str
    title: str
    description: str | None
    content: str
    error_context: Any = None
    pattern_tags: list[str] = field(default_factory=list)
    difficulty_level: str | None = None
    domain_category: str | None = None
    parent_memory_id: str | None = None
    evolution_stage: int = 0
    similarity_score: float | None = None
    trace_outcome: str | None = None
    trace_timestamp: datetime | None = None
    workspace_id: str | None = None


def item_dict(item: Any) -> dict[str, Any]:
    """A memory item as a plain dict, whether it came as a dict, a dataclass or a model."""
    if isinstance(item, dict):
        raw = dict(item)
    elif hasattr(item, "model_dump"):
        raw = dict(item.model_dump())
    elif hasattr(item, "to_dict"):
        raw = dict(item.to_dict())
    else:
        raw = {k: getattr(item, k) for k in ITEM_FIELDS if hasattr(item, k)}
    for key in ("title", "content"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise StorageError(f"a memory item needs a non-empty {key}; got {raw.get(key)!r}.")
    return raw


def prepared_items(items: list[Any], now: datetime) -> list[dict[str, Any]]:
    """Give every item an id and a creation time once, so every backend stores the same item."""
    out = []
    for item in items:
        d = item_dict(item)
        d["id"] = str(d.get("id") or uuid.uuid4())
        created = d.get("created_at")
        d["created_at"] = (
            created.isoformat() if isinstance(created, datetime) else (created or now.isoformat())
        )
        d.setdefault("description", "")
        d.setdefault("error_context", None)
        d.setdefault("parent_memory_id", None)
        d.setdefault("derived_from", None)
        d.setdefault("evolution_stage", 0)
        d.setdefault("pattern_tags", [])
        d.setdefault("difficulty_level", None)
        d.setdefault("domain_category", None)
        out.append(
            {k: d[k] for k in ITEM_FIELDS if k in d}
            | {k: v for k, v in d.items() if k not in ITEM_FIELDS}
        )
    return out


class StorageBackendInterface(ABC):
    """What a ReasoningBank server needs from its store."""

    @abstractmethod
    def add_trace(
        self,
        trace_id: str,
        task: str,
        trajectory: list[Any],
        outcome: str,
        memory_items: list[Any],
        metadata: dict[str, Any] | None = None,
        workspace_id: str | None = None,
        *,
        timestamp: datetime | None = None,
    ) -> str:
        """Store a trace and its memories; returns the trace id. `timestamp` (naive local
        time, as upstream) lets a dual writer give both stores the same one."""

    @abstractmethod
    def query_similar_memories(
        self,
        query_text: str,
        n_results: int = 5,
        include_errors: bool = True,
        domain_filter: str | None = None,
        workspace_id: str | None = None,
    ) -> list[MemoryItem]: ...

    @abstractmethod
    def get_statistics(self, workspace_id: str | None = None) -> dict[str, Any]: ...

    @abstractmethod
    def delete_old_traces(
        self, retention_days: int, workspace_id: str | None = None
    ) -> dict[str, int]: ...

    @abstractmethod
    def delete_workspace(self, workspace_id: str) -> dict[str, int]: ...

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold no connection
        """Release connections (backends that hold none need not override)."""


def check_query(query_text: str, n_results: int) -> None:
    if not isinstance(query_text, str) or not query_text.strip():
        raise RetrievalError("the query text is empty.")
    if n_results < 1 or n_results > 1000:
        raise RetrievalError(f"n_results must be between 1 and 1000; got {n_results}.")


def stats_dict(
    total_traces: int,
    success: int,
    failure: int,
    memories: int,
    with_errors: int,
) -> dict[str, Any]:
    return {
        "total_traces": total_traces,
        "success_traces": success,
        "failure_traces": failure,
        "total_memories": memories,
        "memories_with_errors": with_errors,
        # a percentage, as get_reasoning_bank_stats returns it
        "success_rate": round(success / total_traces * 100, 6) if total_traces else 0.0,
    }
