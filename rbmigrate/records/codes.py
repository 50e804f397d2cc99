"""Stable codes for every record rule (DESIGN §4). Reports count by these; never rename one."""

from __future__ import annotations

from enum import StrEnum


class Reject(StrEnum):
    """The record cannot go to the target; it goes to rejects.jsonl with its original data."""

    INVALID_OUTCOME = "invalid_outcome"
    NON_FINITE_EMBEDDING = "non_finite_embedding"
    MISSING_EMBEDDING = "missing_embedding"
    DIMENSION_MISMATCH = "dimension_mismatch"
    JSON_TOO_DEEP = "json_too_deep"
    DUPLICATE_ID = "duplicate_id"
    UNKNOWN_LAYOUT = "unknown_layout"
    COLLECTION_DIMENSION_MISMATCH = "collection_dimension_mismatch"
    INTERNAL_ERROR = "internal_error"


class Warn(StrEnum):
    """The record goes to the target, changed as the rule says; the original is kept."""

    NON_UUID_ID = "non_uuid_id"
    NON_UUID_TRACE_ID = "non_uuid_trace_id"
    MISSING_TRACE_ID = "missing_trace_id"
    NUL_REMOVED = "nul_removed"
    LONE_SURROGATE = "lone_surrogate"
    NON_FINITE_JSON = "non_finite_json"
    MEMORY_DATA_MISSING = "memory_data_missing"
    MEMORY_DATA_INVALID = "memory_data_invalid"
    OUTCOME_MAPPED = "outcome_mapped"
    INVALID_DIFFICULTY = "invalid_difficulty"
    INVALID_EVOLUTION_STAGE = "invalid_evolution_stage"
    ZERO_VECTOR = "zero_vector"
    REEMBEDDED = "reembedded"
    UNPARSABLE_TIMESTAMP = "unparsable_timestamp"
    MISSING_TIMESTAMP = "missing_timestamp"
    PARENT_NOT_FOUND = "parent_not_found"
    PATTERN_TAGS_STRING = "pattern_tags_string"
    MEMORY_ID_MISMATCH = "memory_id_mismatch"
    DOCUMENT_MISMATCH = "document_mismatch"
    COERCED_FIELD = "coerced_field"
    EMPTY_TEXT = "empty_text"
    OUTCOME_DISAGREEMENT = "outcome_disagreement"
    WORKSPACE_DISAGREEMENT = "workspace_disagreement"


REJECT_HELP: dict[str, str] = {
    Reject.INVALID_OUTCOME: "outcome is not success/failure/partial; map it with [migration] outcome_map",
    Reject.NON_FINITE_EMBEDDING: "the stored embedding holds NaN or Infinity; re-embed the record at the source",
    Reject.MISSING_EMBEDDING: "no stored embedding and re-embedding is off or no model is available",
    Reject.DIMENSION_MISMATCH: "the embedding's length differs from the collection's dimension",
    Reject.JSON_TOO_DEEP: "memory_data nests deeper than 128 levels",
    Reject.DUPLICATE_ID: "another source record maps to the same target id",
    Reject.UNKNOWN_LAYOUT: "the collection is not in the ReasoningBank layout; deselect it",
    Reject.COLLECTION_DIMENSION_MISMATCH: "the collection's dimension differs from the target's",
    Reject.INTERNAL_ERROR: "a rule failed unexpectedly (a bug: please report it with the record)",
}

WARN_HELP: dict[str, str] = {
    Warn.NON_UUID_ID: "id is not a UUID: target id = uuid5(namespace, collection/id), source_id verbatim",
    Warn.NON_UUID_TRACE_ID: "trace_id is not a UUID: mapped with uuid5(namespace, trace/id)",
    Warn.MISSING_TRACE_ID: "no trace_id: a synthetic trace was made for this memory",
    Warn.NUL_REMOVED: "U+0000 removed from a text or JSON string (PostgreSQL cannot store it)",
    Warn.LONE_SURROGATE: "lone UTF-16 surrogate (or invalid UTF-8) replaced by U+FFFD",
    Warn.NON_FINITE_JSON: "NaN/Infinity inside JSON replaced by null",
    Warn.MEMORY_DATA_MISSING: "no memory_data: title/description/content recovered from the document",
    Warn.MEMORY_DATA_INVALID: "memory_data is not a JSON object: recovered from the document",
    Warn.OUTCOME_MAPPED: "outcome translated by [migration] outcome_map",
    Warn.INVALID_DIFFICULTY: "difficulty_level not simple/moderate/complex/expert: NULL, original in metadata",
    Warn.INVALID_EVOLUTION_STAGE: "evolution_stage is not an integer: 0, original in metadata",
    Warn.ZERO_VECTOR: "embedding is all zeros (cosine distance to it is undefined)",
    Warn.REEMBEDDED: "embedding missing: re-embedded from the document with the configured model",
    Warn.UNPARSABLE_TIMESTAMP: "timestamp not parsable: kept in metadata, the trace's time used",
    Warn.MISSING_TIMESTAMP: "no usable timestamp anywhere: the Unix epoch used, marked in metadata",
    Warn.PARENT_NOT_FOUND: "parent_memory_id not found: NULL, original kept in metadata",
    Warn.PATTERN_TAGS_STRING: "pattern_tags was a string: split on commas",
    Warn.MEMORY_ID_MISMATCH: "memory_data.id differs from the Chroma id: Chroma id used, other kept in metadata",
    Warn.DOCUMENT_MISMATCH: "document differs from title/description/content: kept in metadata",
    Warn.COERCED_FIELD: "a field had the wrong type and was converted; original kept in metadata",
    Warn.EMPTY_TEXT: "no title and no content could be found",
    Warn.OUTCOME_DISAGREEMENT: "memories of one trace disagree on outcome: the earliest wins, others in trace metadata",
    Warn.WORKSPACE_DISAGREEMENT: "memories of one trace disagree on workspace: the earliest wins",
}
