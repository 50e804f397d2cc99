"""The record rules of DESIGN §4: one Chroma record in, one memory row or one reject out.

`normalize` is pure and total: whatever the record holds, it returns a `Normalized` and
never raises. The row it returns is what PostgreSQL will accept (no NUL, no lone
surrogates, no NaN in JSON, checked enums); everything it had to change is a warning with
a stable code, and the original value is kept in the row's `metadata`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any
from uuid import UUID

import numpy as np

from rbmigrate.records.clean import JsonTooDeep, clean_json, clean_text, json_text_is_clean
from rbmigrate.records.codes import Reject, Warn
from rbmigrate.records.ids import (
    DIFFICULTIES,
    EPOCH,
    as_uuid,
    memory_uuid,
    normalize_outcome,
    parse_timestamp,
    synthetic_trace_uuid,
    trace_uuid,
)
from rbmigrate.records.model import (
    Issue,
    MemoryRow,
    Normalized,
    SourceRecord,
    TraceObservation,
)

# Chroma metadata keys the ReasoningBank layout defines; any other key is kept in metadata.
CHROMA_KEYS = frozenset(
    {
        "trace_id",
        "task",
        "outcome",
        "timestamp",
        "memory_data",
        "workspace_id",
        "domain_category",
        "difficulty_level",
        "has_error_context",
    }
)
# memory_data keys that have a column (or are the id); others are kept in metadata.
ITEM_KEYS = frozenset(
    {
        "id",
        "title",
        "description",
        "content",
        "error_context",
        "parent_memory_id",
        "evolution_stage",
        "pattern_tags",
        "difficulty_level",
        "domain_category",
        "created_at",
    }
)
INT4 = 2**31


@dataclass(frozen=True)
class RuleContext:
    """What the rules need to know beyond the record itself."""

    timezone: tzinfo = UTC
    outcome_map: Mapping[str, str] = field(default_factory=dict)
    dimension: int | None = None
    workspaces: frozenset[str] | None = None
    reembed: bool = False
    trace_time: Callable[[UUID], datetime | None] | None = None


class _Notes:
    """Collects warnings (one per code per record) and originals kept for metadata."""

    def __init__(self) -> None:
        self.found: set[str] = set()
        self.messages: dict[str, str] = {}
        self.original: dict[str, Any] = {}

    def warn(self, code: str, message: str) -> None:
        self.found.add(code)
        self.messages.setdefault(code, message)

    def issues(self) -> list[Issue]:
        return [Issue(code, self.messages.get(code, code)) for code in sorted(self.found)]


def workspace_of(metadata: Mapping[str, Any], found: set[str]) -> str | None:
    value = metadata.get("workspace_id")
    if value is None or isinstance(value, bool):
        return None
    text = clean_text(str(value), found).strip()
    return text or None


def is_selected(workspace: str | None, ctx: RuleContext) -> bool:
    """A workspace filter of "" selects records that have no workspace."""
    return ctx.workspaces is None or (workspace or "") in ctx.workspaces


def observe(
    collection: str,
    source_id: str,
    metadata: Mapping[str, Any] | None,
    position: int,
    ctx: RuleContext,
    found: set[str] | None = None,
) -> TraceObservation:
    """What this memory's metadata says about its trace; the same answer in every pass."""
    meta = metadata or {}
    found = set() if found is None else found
    raw = meta.get("trace_id")
    raw_text = None if raw is None or isinstance(raw, bool) else clean_text(str(raw), found).strip()
    if not raw_text:
        tid, synthetic, raw_text = synthetic_trace_uuid(collection, source_id), True, None
    else:
        tid, _ = trace_uuid(raw_text)
        synthetic = False
    task_value = meta.get("task")
    task = "" if task_value is None else clean_text(str(task_value), found)
    outcome, _ = normalize_outcome(meta.get("outcome"), dict(ctx.outcome_map))
    return TraceObservation(
        trace_id=tid,
        raw_trace_id=raw_text,
        synthetic=synthetic,
        task=task,
        outcome=outcome,
        timestamp=parse_timestamp(meta.get("timestamp"), ctx.timezone),
        workspace_id=workspace_of(meta, found),
        collection=collection,
        source_id=source_id,
        position=position,
    )


def _parse_memory_data(raw: Any, notes: _Notes) -> tuple[dict[str, Any] | None, bool]:
    """(the parsed item, whether it still needs cleaning)."""
    if raw is None:
        notes.warn(Warn.MEMORY_DATA_MISSING, "metadata has no memory_data")
        return None, False
    value = raw
    if isinstance(raw, str):
        try:
            value = json.loads(raw)
        except (ValueError, RecursionError):
            notes.warn(Warn.MEMORY_DATA_INVALID, "memory_data is not valid JSON")
            return None, False
    if not isinstance(value, dict):
        notes.warn(
            Warn.MEMORY_DATA_INVALID, f"memory_data is a JSON {type(value).__name__}, not an object"
        )
        return None, False
    return value, not (isinstance(raw, str) and json_text_is_clean(raw))


def _split_document(document: str) -> tuple[str, str | None, str]:
    """Upstream composes f"{title}\\n{description}\\n{content}"; undo it."""
    parts = document.split("\n", 2)
    title = parts[0]
    description = parts[1] if len(parts) > 1 else None
    content = parts[2] if len(parts) > 2 else ""
    return title, description, content


def _text(item: Mapping[str, Any], key: str, notes: _Notes, *, nullable: bool) -> str | None:
    value = item.get(key)
    if value is None:
        return None if nullable else ""
    if isinstance(value, str):
        return value
    notes.warn(Warn.COERCED_FIELD, f"memory_data.{key} is a {type(value).__name__}, stored as text")
    notes.original.setdefault("coerced", {})[key] = value
    return json.dumps(value, ensure_ascii=False, default=str)


def _pattern_tags(value: Any, notes: _Notes) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        notes.warn(Warn.PATTERN_TAGS_STRING, "pattern_tags is a string; split on commas")
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list):
        tags: list[str] = []
        for tag in value:
            if tag is None:
                continue
            if not isinstance(tag, str):
                notes.warn(Warn.COERCED_FIELD, "pattern_tags holds non-string values")
                notes.original.setdefault("coerced", {})["pattern_tags"] = value
                tag = json.dumps(tag, ensure_ascii=False, default=str)
            tags.append(tag)
        return tags
    notes.warn(Warn.COERCED_FIELD, f"pattern_tags is a {type(value).__name__}")
    notes.original.setdefault("coerced", {})["pattern_tags"] = value
    return [json.dumps(value, ensure_ascii=False, default=str)]


def _difficulty(value: Any, notes: _Notes) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.strip().lower() in DIFFICULTIES:
        return value.strip().lower()
    notes.warn(
        Warn.INVALID_DIFFICULTY,
        f"difficulty_level {value!r} is not one of {', '.join(DIFFICULTIES)}",
    )
    notes.original["difficulty_level"] = value
    return None


def _evolution_stage(value: Any, notes: _Notes) -> int:
    if value is None:
        return 0
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
        number = int(value.strip())
    if number is not None and -INT4 <= number < INT4:
        return number
    notes.warn(Warn.INVALID_EVOLUTION_STAGE, f"evolution_stage {value!r} is not an integer")
    notes.original["evolution_stage"] = value
    return 0


def _parent(collection: str, value: Any) -> UUID | None:
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip()
    if not text:
        return None
    return memory_uuid(collection, text)[0]


def _created_at(
    item: Mapping[str, Any] | None,
    meta: Mapping[str, Any],
    trace: UUID,
    ctx: RuleContext,
    notes: _Notes,
) -> datetime:
    for where, source in (("memory_data.created_at", item or {}), ("timestamp", meta)):
        key = "created_at" if where.startswith("memory_data") else "timestamp"
        raw = source.get(key)
        if raw is None:
            continue
        parsed = parse_timestamp(raw, ctx.timezone)
        if parsed is not None:
            return parsed
        notes.warn(Warn.UNPARSABLE_TIMESTAMP, f"{where} {raw!r} is not a readable time")
        notes.original[key] = raw
    if ctx.trace_time is not None:
        fallback = ctx.trace_time(trace)
        if fallback is not None:
            return fallback
    notes.warn(Warn.MISSING_TIMESTAMP, "no readable time for this memory or its trace")
    notes.original["no_timestamp"] = True
    return EPOCH


def _check_embedding(vec: Any, ctx: RuleContext, notes: _Notes) -> tuple[Issue | None, bool]:
    """(reject, needs re-embedding)."""
    if vec is None:
        if ctx.reembed:
            notes.warn(Warn.REEMBEDDED, "no stored embedding; re-embedded from the document")
            return None, True
        return Issue(
            Reject.MISSING_EMBEDDING, "the record has no embedding and re-embedding is off"
        ), False
    if ctx.dimension and vec.shape[0] != ctx.dimension:
        return Issue(
            Reject.DIMENSION_MISMATCH,
            f"embedding has {vec.shape[0]} dimensions, the collection has {ctx.dimension}",
        ), False
    # one sum answers both questions for almost every vector; the exact checks run only when
    # it is not finite (NaN, Infinity, or an overflowing sum) or zero
    total = float(vec.sum())
    if not math.isfinite(total) and not np.isfinite(vec).all():
        return Issue(Reject.NON_FINITE_EMBEDDING, "embedding holds NaN or Infinity"), False
    if total == 0.0 and not vec.any():
        notes.warn(Warn.ZERO_VECTOR, "embedding is all zeros")
    return None, False


def normalize(record: SourceRecord, ctx: RuleContext) -> Normalized:
    """Apply every rule to one record. Total: returns a reject rather than raising."""
    try:
        return _normalize(record, ctx)
    except Exception as exc:  # a rule bug must never lose a record: reject with the reason
        return Normalized(
            record=record,
            row=None,
            observation=None,
            reject=Issue(Reject.INTERNAL_ERROR, f"normalizer failed: {type(exc).__name__}: {exc}"),
        )


def _normalize(record: SourceRecord, ctx: RuleContext) -> Normalized:
    notes = _Notes()
    meta: Mapping[str, Any] = record.metadata if isinstance(record.metadata, dict) else {}
    collection = record.collection
    observation = observe(collection, record.id, meta, record.position, ctx, notes.found)
    if not is_selected(observation.workspace_id, ctx):
        return Normalized(record=record, row=None, observation=observation, skipped=True)

    def rejected(issue: Issue) -> Normalized:
        return Normalized(record=record, row=None, observation=observation, reject=issue)

    outcome_raw = meta.get("outcome")
    outcome, mapped = normalize_outcome(outcome_raw, dict(ctx.outcome_map))
    if outcome is None:
        return rejected(
            Issue(
                Reject.INVALID_OUTCOME,
                f"outcome {outcome_raw!r} is not success, failure or partial",
            )
        )
    if mapped:
        notes.warn(Warn.OUTCOME_MAPPED, f"outcome {outcome_raw!r} mapped to {outcome!r}")

    reject, needs_embedding = _check_embedding(record.embedding, ctx, notes)
    if reject is not None:
        return rejected(reject)

    found = notes.found
    row_id, was_uuid = memory_uuid(collection, record.id)
    if not was_uuid:
        notes.warn(Warn.NON_UUID_ID, f"id {record.id!r} is not a UUID; mapped to {row_id}")
    if observation.synthetic:
        notes.warn(Warn.MISSING_TRACE_ID, "no trace_id; a synthetic trace holds this memory")
    elif observation.raw_trace_id is not None and as_uuid(observation.raw_trace_id) is None:
        notes.warn(Warn.NON_UUID_TRACE_ID, f"trace_id {observation.raw_trace_id!r} is not a UUID")

    item, dirty = _parse_memory_data(meta.get("memory_data"), notes)
    try:
        item = clean_json(item, found) if item is not None and dirty else item
    except JsonTooDeep as exc:
        return rejected(Issue(Reject.JSON_TOO_DEEP, f"memory_data: {exc}"))
    document = clean_text(record.document, found) if record.document is not None else None

    if item is None:
        title, description, content = _split_document(document or "")
    else:
        title = _text(item, "title", notes, nullable=False) or ""
        description = _text(item, "description", notes, nullable=True)
        content = _text(item, "content", notes, nullable=False) or ""
        composed = (
            f"{item.get('title', '')}\n{item.get('description', '')}\n{item.get('content', '')}"
        )
        if document is not None and document != composed:
            notes.warn(Warn.DOCUMENT_MISMATCH, "document differs from title/description/content")
            notes.original["document"] = document
        item_id = item.get("id")
        if item_id is not None and str(item_id) != record.id:
            same = as_uuid(str(item_id)) is not None and as_uuid(str(item_id)) == as_uuid(record.id)
            if not same:
                notes.warn(
                    Warn.MEMORY_ID_MISMATCH,
                    f"memory_data.id {item_id!r} differs from the Chroma id",
                )
                notes.original["memory_data_id"] = item_id
    if not title and not content:
        notes.warn(Warn.EMPTY_TEXT, "no title and no content")

    item_view: Mapping[str, Any] = item or {}
    created_at = _created_at(item, meta, observation.trace_id, ctx, notes)

    source_id = clean_text(record.id, found)
    if source_id != record.id:
        notes.original["source_id_hex"] = record.id.encode("utf-8", "surrogatepass").hex()

    metadata: dict[str, Any] = {}
    extra_chroma = {k: v for k, v in meta.items() if k not in CHROMA_KEYS}
    for key in ("domain_category", "difficulty_level"):
        if key in meta and item is not None and meta[key] != item.get(key):
            extra_chroma[key] = meta[key]
    if extra_chroma:
        metadata["chroma"] = clean_json(extra_chroma, found)
    extra_item = {k: v for k, v in item_view.items() if k not in ITEM_KEYS}
    if extra_item:
        metadata["memory_data"] = extra_item

    domain = item_view.get("domain_category")
    if domain is not None and not isinstance(domain, str):
        domain = _text(item_view, "domain_category", notes, nullable=True)
    row = MemoryRow(
        id=row_id,
        trace_id=observation.trace_id,
        title=title,
        description=description,
        content=content,
        embedding=record.embedding,
        error_context=item_view.get("error_context"),
        pattern_tags=_pattern_tags(item_view.get("pattern_tags"), notes),
        difficulty_level=_difficulty(item_view.get("difficulty_level"), notes),
        domain_category=domain,
        parent_ref=_parent(collection, item_view.get("parent_memory_id")),
        evolution_stage=_evolution_stage(item_view.get("evolution_stage"), notes),
        workspace_id=observation.workspace_id,
        created_at=created_at,
        source_id=source_id,
        source_collection=collection,
        metadata=metadata,
        needs_embedding=needs_embedding,
    )
    if item_view.get("parent_memory_id") not in (None, "") and row.parent_ref is not None:
        raw_parent = item_view.get("parent_memory_id")
        if as_uuid(str(raw_parent)) is None:
            notes.original["parent_memory_id"] = raw_parent
    if notes.original:
        metadata["original"] = clean_json(notes.original, found)
    if needs_embedding:  # lets verify recompute this row's hash from the target alone
        metadata["reembedded"] = True
    # cleaning warnings found while building metadata
    for code in (Warn.NUL_REMOVED, Warn.LONE_SURROGATE, Warn.NON_FINITE_JSON):
        if code in found:
            notes.messages.setdefault(code, _CLEAN_MESSAGES[code])
    return Normalized(record=record, row=row, observation=observation, warnings=notes.issues())


_CLEAN_MESSAGES = {
    Warn.NUL_REMOVED: "U+0000 removed from text",
    Warn.LONE_SURROGATE: "lone surrogate replaced by U+FFFD",
    Warn.NON_FINITE_JSON: "NaN/Infinity in JSON replaced by null",
}
