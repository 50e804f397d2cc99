"""What every Chroma reader offers: collections with their facts, and pages of records."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from rbmigrate.records.model import SourceRecord

RB_KEYS = ("trace_id", "outcome", "memory_data", "task")


@dataclass
class CollectionInfo:
    name: str
    id: str
    count: int
    dimension: int | None
    space: str
    space_source: str  # "metadata" (hnsw:space), "configuration" or "default"
    configured_space: str | None = None
    layout: str = "unknown"  # reasoningbank | empty | unknown
    layout_detail: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "count": self.count,
            "dimension": self.dimension,
            "space": self.space,
            "layout": self.layout,
        }

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def classify_layout(samples: list[Mapping[str, Any] | None], count: int) -> tuple[str, str]:
    """ReasoningBank layout if most sampled records carry at least two of its keys."""
    if count == 0:
        return "empty", "no records"
    hits = sum(1 for m in samples if m and sum(1 for k in RB_KEYS if k in m) >= 2)
    if samples and hits * 2 >= len(samples):
        return "reasoningbank", f"{hits}/{len(samples)} sampled records have the ReasoningBank keys"
    seen = sorted({k for m in samples if m for k in m})[:8]
    return "unknown", (
        f"{hits}/{len(samples)} sampled records have ReasoningBank keys "
        f"({', '.join(RB_KEYS)}); keys seen: {', '.join(seen) or 'none'}"
    )


def space_of(metadata: Mapping[str, Any] | None, configured: str | None) -> tuple[str, str]:
    """Chroma 0.x wrote the space to metadata["hnsw:space"]; 1.x may report "l2" in the
    configuration of such stores while queries really use the metadata's space."""
    value = (metadata or {}).get("hnsw:space")
    if isinstance(value, str) and value in ("l2", "ip", "cosine"):
        return value, "metadata"
    if configured in ("l2", "ip", "cosine"):
        return configured, "configuration"
    return "l2", "default"


class Reader(Protocol):
    kind: str  # "persistent" | "http"

    def collections(self) -> list[CollectionInfo]: ...

    def pages(
        self,
        collection: CollectionInfo,
        *,
        after: int,
        with_embeddings: bool,
        page_size: int,
        metadata_keys: tuple[str, ...] | None = None,
    ) -> Iterator[list[SourceRecord]]:
        """Records after position `after`, in a stable order, `page_size` at a time."""
        ...

    def close(self) -> None: ...
