"""Id and time rules shared by memories and traces (DESIGN §4)."""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, datetime, tzinfo
from typing import Any
from uuid import UUID

# The project namespace for uuid5 ids; fixed forever, or re-runs would duplicate rows.
NAMESPACE = UUID("6f1c4e0a-3b8e-5d2a-9c47-2b9f6a1d8e53")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
OUTCOMES = ("success", "failure", "partial")
DIFFICULTIES = ("simple", "moderate", "complex", "expert")


def name_uuid(name: str) -> UUID:
    """uuid5 in the project namespace. Ids are hashed with surrogates passed through, so two
    ids that differ only in an invalid code point still get two different UUIDs."""
    digest = hashlib.sha1(NAMESPACE.bytes + name.encode("utf-8", "surrogatepass")).digest()
    return UUID(bytes=digest[:16], version=5)


def as_uuid(value: str) -> UUID | None:
    """The canonical UUID if `value` is one (any case, braces or urn form), else None."""
    text = value.strip()
    if not 32 <= len(text) <= 45:
        return None
    try:
        return UUID(text)
    except ValueError:
        return None


def memory_uuid(collection: str, source_id: str) -> tuple[UUID, bool]:
    """(target id, was it a UUID already). Non-UUID ids map to uuid5(ns, 'collection/id')."""
    parsed = as_uuid(source_id)
    if parsed is not None:
        return parsed, True
    return name_uuid(f"{collection}/{source_id}"), False


def trace_uuid(raw: str) -> tuple[UUID, bool]:
    """Trace ids are not scoped by collection: traces.json must map to the same id."""
    parsed = as_uuid(raw)
    if parsed is not None:
        return parsed, True
    return name_uuid(f"trace/{raw}"), False


def synthetic_trace_uuid(collection: str, source_id: str) -> UUID:
    return name_uuid(f"synthetic-trace/{collection}/{source_id}")


def normalize_outcome(value: Any, mapping: dict[str, str]) -> tuple[str | None, bool]:
    """(outcome or None if invalid, was the config mapping used)."""
    if not isinstance(value, str):
        if value is None or isinstance(value, bool):
            return None, False
        value = str(value)
    key = value.strip().lower()
    if key in OUTCOMES:
        return key, False
    for raw, target in mapping.items():
        if raw.strip().lower() == key:
            return target, True
    return None, False


def parse_timestamp(value: Any, tz: tzinfo) -> datetime | None:
    """An aware UTC datetime, or None if `value` is not a time we can read.

    Naive ISO strings are read in the source's time zone (the ReasoningBank server wrote
    local time); numbers are Unix seconds.
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        if not math.isfinite(value) or not 0 <= value < 253402300800:
            return None
        return datetime.fromtimestamp(value, UTC)
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text or len(text) > 64:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    try:
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        return None
