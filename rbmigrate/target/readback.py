"""Read target rows back into the record model, so verify can recompute their hashes.

A stored `source_hash` only proves a row was written; hashing what the row *holds now*
proves its content equals the source. The markers rbmigrate adds (an unresolved parent kept
in metadata) are undone here, so the recomputed hash is the normalized source row's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

import numpy as np
from psycopg import sql

from rbmigrate.records.model import MemoryRow, TraceRow

MEMORY_SELECT = (
    "id, trace_id, title, description, content, content_embedding, error_context, pattern_tags,"
    " difficulty_level, domain_category, parent_memory_id, evolution_stage, workspace_id, created_at,"
    " source_id, source_collection, source_hash, metadata"
)
TRACE_SELECT = (
    'id, task, trajectory, outcome, metadata, parent_trace_id, "timestamp", num_memories,'
    " workspace_id, source_id, source_hash, task_embedding IS NOT NULL"
)


def to_vector(value: Any) -> np.ndarray | None:
    if value is None:
        return None
    if hasattr(value, "to_numpy"):
        return np.asarray(value.to_numpy(), dtype=np.float32)
    return np.asarray(value, dtype=np.float32)


def memory_from_row(r: Sequence[Any]) -> tuple[MemoryRow, str | None]:
    """(the row as a MemoryRow, its stored source_hash)."""
    metadata = dict(r[17] or {})
    parent = r[10]
    unresolved = metadata.pop("unresolved_parent_memory_id", None)
    if parent is None and unresolved:
        parent = UUID(unresolved)
    row = MemoryRow(
        id=r[0],
        trace_id=r[1],
        title=r[2],
        description=r[3],
        content=r[4],
        embedding=to_vector(r[5]),
        error_context=r[6],
        pattern_tags=list(r[7] or []),
        difficulty_level=r[8],
        domain_category=r[9],
        parent_ref=parent,
        evolution_stage=r[11],
        workspace_id=r[12],
        created_at=r[13],
        source_id=r[14],
        source_collection=r[15],
        metadata=metadata,
        needs_embedding=bool(metadata.get("reembedded")),
    )
    return row, r[16]


def trace_from_row(r: Sequence[Any]) -> tuple[TraceRow, str | None, bool]:
    """(the row as a TraceRow, its stored source_hash, whether it has a task embedding)."""
    metadata = dict(r[4] or {})
    parent = r[5]
    unresolved = metadata.pop("unresolved_parent_trace_id", None)
    if parent is None and unresolved:
        parent = UUID(unresolved)
    row = TraceRow(
        id=r[0],
        task=r[1],
        trajectory=r[2],
        outcome=r[3],
        metadata=metadata,
        parent_trace_id=parent,
        timestamp=r[6],
        num_memories=r[7],
        workspace_id=r[8],
        source_id=r[9],
    )
    return row, r[10], bool(r[11])


def fetch_memories(
    conn: Any, schema: str, collection: str, source_ids: list[str]
) -> dict[str, Sequence[Any]]:
    cur = conn.cursor(binary=True)  # vectors as float32 bytes, not text to parse
    rows = cur.execute(
        sql.SQL(
            "SELECT " + MEMORY_SELECT + " FROM {}.memory_items WHERE source_collection = %s"
            " AND source_id = ANY(%s)"
        ).format(sql.Identifier(schema)),
        (collection, source_ids),
    ).fetchall()
    return {r[14]: r for r in rows}


def fetch_memory_hashes(
    conn: Any, schema: str, collection: str, source_ids: list[str]
) -> dict[str, tuple[UUID, str | None, str | None]]:
    """source_id -> (id, stored hash, workspace): the cheap half of verify."""
    rows = conn.execute(
        sql.SQL(
            "SELECT source_id, id, source_hash, workspace_id FROM {}.memory_items"
            " WHERE source_collection = %s AND source_id = ANY(%s)"
        ).format(sql.Identifier(schema)),
        (collection, source_ids),
    ).fetchall()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def fetch_traces(conn: Any, schema: str, ids: list[UUID]) -> dict[UUID, Sequence[Any]]:
    rows = conn.execute(
        sql.SQL("SELECT " + TRACE_SELECT + " FROM {}.reasoning_traces WHERE id = ANY(%s)").format(
            sql.Identifier(schema)
        ),
        (ids,),
    ).fetchall()
    return {r[0]: r for r in rows}
