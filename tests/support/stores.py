"""Build real Chroma stores (written by the installed chromadb) for tests."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import chromadb
import numpy as np
from chromadb.config import Settings


def rb_metadata(
    *,
    trace_id: str = "11111111-1111-4111-8111-111111111111",
    task: str = "a task",
    outcome: Any = "success",
    timestamp: Any = "2025-03-01T10:00:00",
    item: Any = None,
    workspace_id: Any = "0123456789abcdef",
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    md: dict[str, Any] = {
        "trace_id": trace_id,
        "task": task,
        "outcome": outcome,
        "timestamp": timestamp,
    }
    if item is not None:
        md["memory_data"] = item if isinstance(item, str) else json.dumps(item)
    if workspace_id is not None:
        md["workspace_id"] = workspace_id
    md.update(extra or {})
    return {k: v for k, v in md.items() if v is not None}


def item(
    mid: str, title: str = "Title", description: str = "Desc", content: str = "Content", **more: Any
) -> dict[str, Any]:
    d = {
        "id": mid,
        "title": title,
        "description": description,
        "content": content,
        "error_context": None,
        "parent_memory_id": None,
        "evolution_stage": 0,
        "pattern_tags": [],
        "difficulty_level": "simple",
        "domain_category": "testing",
        "created_at": "2025-03-01T10:00:00",
    }
    d.update(more)
    return d


def unit_vector(seed: str, dim: int = 384) -> np.ndarray:
    rng = np.random.default_rng(int(hashlib.sha256(seed.encode()).hexdigest()[:8], 16))
    v = rng.standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


def write_store(
    path: Path,
    records: Iterable[tuple[str, str | None, dict[str, Any] | None, Any]],
    *,
    collection: str = "reasoning_memories",
    space: str | None = None,
    dim: int = 384,
) -> Path:
    """records: (id, document, metadata, embedding or None for a seeded unit vector)."""
    client = chromadb.PersistentClient(
        path=str(path), settings=Settings(anonymized_telemetry=False)
    )
    meta = {"hnsw:space": space} if space else None
    col = client.get_or_create_collection(collection, metadata=meta, embedding_function=None)
    rows = list(records)
    for start in range(0, len(rows), 1000):
        chunk = rows[start : start + 1000]
        col.add(
            ids=[r[0] for r in chunk],
            documents=[r[1] for r in chunk],
            metadatas=[r[2] for r in chunk],
            embeddings=[
                (unit_vector(r[0], dim) if r[3] is None else np.asarray(r[3], dtype=np.float32))
                for r in chunk
            ],
        )
    del col
    client.clear_system_cache()
    return path


def tree_state(root: Path) -> dict[str, tuple[int, str, int]]:
    """Every file under root: (size, sha256, mtime_ns), for byte-identical checks."""
    state: dict[str, tuple[int, str, int]] = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            p = Path(dirpath) / name
            data = p.read_bytes()
            state[str(p.relative_to(root))] = (
                len(data),
                hashlib.sha256(data).hexdigest(),
                p.stat().st_mtime_ns,
            )
    return state
