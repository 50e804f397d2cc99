"""How big the target will be and how long the migration will take, before it starts.

Sizes follow how PostgreSQL stores the rows: a `vector(d)` is 4·d + 8 bytes; a memory row
with its vector is wider than the ~2 KB TOAST threshold, so the vector moves out of line
(with chunk overhead); an HNSW element (m = 16) is the vector plus ~500 bytes of neighbour
lists and headers. The constants were fitted on the 100,000-record demo store
(bench/RESULTS.md compares them with what PostgreSQL reports).

Durations use rates measured by `bench/` on a 2-core machine; the encoding of trace tasks
runs alongside the writes, so the slower of the two counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TOAST_THRESHOLD = 2032
MEMORY_ROW_FIXED = 380  # header, ids, timestamps, source_id/hash/collection, small columns
TRACE_ROW_FIXED = 500
TOAST_OVERHEAD = 1.075  # chunk headers and item pointers around an out-of-line vector
HNSW_PER_ROW = 500  # neighbour lists (2·m at layer 0), element header, page fill
BTREE_PER_MEMORY = 210  # the eight b-tree/GIN indexes on memory_items
BTREE_PER_TRACE = 130

# records (or rows, or tasks) per second, measured by bench/run.py on 2 cores
RATES = {"read": 6000.0, "write": 2200.0, "encode": 270.0, "index": 6800.0, "verify": 8800.0}


@dataclass
class Workload:
    source_records: int = 0
    memories: int = 0  # rows the target will hold for this source
    memory_text_bytes: int = 0  # title + description + content + metadata, UTF-8
    writes: int = 0  # new + changed memories
    traces: int = 0
    trace_text_bytes: int = 0
    traces_to_encode: int = 0
    index_build: bool = True  # initial load: the HNSW indexes are built after the data


def vector_bytes(dimension: int, half: bool = False) -> int:
    return (2 if half else 4) * dimension + 8


def _memory_bytes(w: Workload, dimension: int, half: bool) -> dict[str, float]:
    vec = vector_bytes(dimension, half)
    text = w.memory_text_bytes / w.memories if w.memories else 330.0
    inline = MEMORY_ROW_FIXED + text + vec
    if inline > TOAST_THRESHOLD:
        heap, toast = MEMORY_ROW_FIXED + text + 18, vec * TOAST_OVERHEAD
    else:
        heap, toast = inline, 0.0
    return {
        "heap": w.memories * heap,
        "toast": w.memories * toast,
        "hnsw": w.memories * (vec + HNSW_PER_ROW),
        "btree": w.memories * BTREE_PER_MEMORY,
    }


def _trace_bytes(w: Workload, dimension: int, half: bool) -> dict[str, float]:
    vec = vector_bytes(dimension, half)
    task = w.trace_text_bytes / w.traces if w.traces else 60.0
    return {
        "heap": w.traces * (TRACE_ROW_FIXED + task + vec),
        "hnsw": w.traces * (vec + HNSW_PER_ROW),
        "btree": w.traces * BTREE_PER_TRACE,
    }


def estimate_bytes(w: Workload, dimension: int, half: bool = False) -> dict[str, int]:
    m = _memory_bytes(w, dimension, half)
    t = _trace_bytes(w, dimension, half)
    out = {
        "memory_items": sum(m.values()),
        "reasoning_traces": sum(t.values()),
        "hnsw_indexes": m["hnsw"] + t["hnsw"],
    }
    out["total"] = out["memory_items"] + out["reasoning_traces"]
    return {k: int(v) for k, v in out.items()}


def estimate_seconds(w: Workload) -> dict[str, float]:
    est = {
        "read": w.source_records / RATES["read"],
        "write": w.writes / RATES["write"],
        "encode": w.traces_to_encode / RATES["encode"],
        "index": (w.memories + w.traces) / RATES["index"] if w.index_build and w.writes else 0.0,
        "verify": w.source_records / RATES["verify"],
    }
    est["total"] = est["read"] + max(est["write"], est["encode"]) + est["index"] + est["verify"]
    return {k: round(v, 1) for k, v in est.items()}


def estimate(w: Workload, dimension: int) -> dict[str, Any]:
    full = estimate_bytes(w, dimension)
    half = estimate_bytes(w, dimension, half=True)
    return {
        "rows": {"memory_items": w.memories, "reasoning_traces": w.traces},
        "bytes": full,
        "halfvec_saves_bytes": full["total"] - half["total"],
        "seconds": estimate_seconds(w),
        "basis": "sizes from PostgreSQL's row and HNSW layout; rates measured by bench/ on 2 cores",
    }


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"
