"""Every record rule of DESIGN §4, one test each (pure functions, no database)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from uuid import UUID, uuid5
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from rbmigrate.records import (
    Reject,
    RuleContext,
    SourceRecord,
    Warn,
    build_trace,
    memory_hash,
    normalize,
    observe,
)
from rbmigrate.records.ids import NAMESPACE
from tests.support.stores import item, rb_metadata

MID = "3f2a7c1e-9b4d-4e8f-a1c2-0d9e8f7a6b5c"
VEC = np.full(384, 0.05, dtype=np.float32)
CTX = RuleContext(dimension=384)


def rec(
    mid: str = MID,
    doc: str | None = "Title\nDesc\nContent",
    meta: dict | None = None,
    emb: np.ndarray | None = VEC,
    collection: str = "reasoning_memories",
) -> SourceRecord:
    if meta is None:
        meta = rb_metadata(item=item(mid))
    return SourceRecord(collection, mid, doc, meta, emb)


def codes(n) -> set[str]:
    return {w.code for w in n.warnings}


def test_clean_record_has_no_warnings_and_canonical_ids():
    n = normalize(rec(mid=MID.upper()), CTX)
    assert n.reject is None and n.row is not None
    assert n.row.id == UUID(MID)
    assert n.row.source_id == MID.upper()  # verbatim
    assert codes(n) == set()


def test_non_uuid_id_maps_to_uuid5_of_collection_and_id():
    n = normalize(rec(mid="mem-42", meta=rb_metadata(item=item("mem-42"))), CTX)
    assert n.row.id == uuid5(NAMESPACE, "reasoning_memories/mem-42")
    assert n.row.source_id == "mem-42"
    assert Warn.NON_UUID_ID in codes(n)


def test_same_non_uuid_id_in_two_collections_gets_two_ids():
    a = normalize(rec(mid="x", collection="a", meta=rb_metadata(item=item("x"))), CTX)
    b = normalize(rec(mid="x", collection="b", meta=rb_metadata(item=item("x"))), CTX)
    assert a.row.id != b.row.id


def test_non_uuid_trace_id_maps_with_uuid5():
    n = normalize(rec(meta=rb_metadata(trace_id="trace-7", item=item(MID))), CTX)
    assert n.row.trace_id == uuid5(NAMESPACE, "trace/trace-7")
    assert Warn.NON_UUID_TRACE_ID in codes(n)


def test_missing_trace_id_gets_a_synthetic_trace_marked_in_metadata():
    meta = rb_metadata(item=item(MID))
    del meta["trace_id"]
    n = normalize(rec(meta=meta), CTX)
    assert Warn.MISSING_TRACE_ID in codes(n)
    trace = build_trace(n.row.trace_id, [n.observation], None, CTX)
    assert trace.metadata["synthetic"]["memory_source_id"] == MID


def test_nul_removed_from_text_and_json_strings():
    it = item(MID, title="ti\x00tle", error_context={"msg": "a\x00b", "k\x00": 1})
    n = normalize(rec(doc="ti\x00tle\nDesc\nContent", meta=rb_metadata(item=it)), CTX)
    assert n.row.title == "title"
    assert n.row.error_context == {"msg": "ab", "k": 1}
    assert Warn.NUL_REMOVED in codes(n)


def test_lone_surrogates_replaced_by_replacement_character():
    raw = f'{{"id": "{MID}", "title": "bad \\ud800 here", "description": "d", "content": "c"}}'
    n = normalize(rec(meta=rb_metadata(item=raw)), CTX)
    assert n.row.title == "bad \ufffd here"
    assert Warn.LONE_SURROGATE in codes(n)


def test_nan_and_infinity_inside_json_become_null():
    raw = f'{{"id": "{MID}", "title": "t", "description": "d", "content": "c", "error_context": {{"x": NaN, "y": [Infinity, 1]}}}}'
    n = normalize(rec(meta=rb_metadata(item=raw)), CTX)
    assert n.row.error_context == {"x": None, "y": [None, 1]}
    assert Warn.NON_FINITE_JSON in codes(n)


@pytest.mark.parametrize("bad", [None, "not json {", "[1, 2]"])
def test_memory_data_missing_or_not_json_recovers_from_document(bad):
    meta = rb_metadata(item=bad)
    n = normalize(rec(doc="The title\nThe description\nline one\nline two", meta=meta), CTX)
    assert (n.row.title, n.row.description, n.row.content) == (
        "The title",
        "The description",
        "line one\nline two",
    )
    assert codes(n) & {Warn.MEMORY_DATA_MISSING, Warn.MEMORY_DATA_INVALID}


@pytest.mark.parametrize(
    "raw,expected", [(" Success ", "success"), ("FAILURE", "failure"), ("partial", "partial")]
)
def test_outcome_trimmed_and_lower_cased(raw, expected):
    n = normalize(rec(meta=rb_metadata(outcome=raw, item=item(MID))), CTX)
    assert n.reject is None
    assert n.observation.outcome == expected


@pytest.mark.parametrize("raw", ["won", "", None, 3])
def test_unknown_outcome_is_rejected(raw):
    n = normalize(rec(meta=rb_metadata(outcome=raw, item=item(MID))), CTX)
    assert n.row is None and n.reject.code == Reject.INVALID_OUTCOME


def test_outcome_map_translates_before_validation():
    ctx = RuleContext(dimension=384, outcome_map={"ok": "success"})
    n = normalize(rec(meta=rb_metadata(outcome="OK", item=item(MID))), ctx)
    assert n.reject is None and Warn.OUTCOME_MAPPED in codes(n)


def test_difficulty_outside_the_set_is_null_with_original_kept():
    n = normalize(rec(meta=rb_metadata(item=item(MID, difficulty_level="Legendary"))), CTX)
    assert n.row.difficulty_level is None
    assert n.row.metadata["original"]["difficulty_level"] == "Legendary"
    assert Warn.INVALID_DIFFICULTY in codes(n)


def test_difficulty_is_case_normalized_when_valid():
    n = normalize(rec(meta=rb_metadata(item=item(MID, difficulty_level=" Complex"))), CTX)
    assert n.row.difficulty_level == "complex" and Warn.INVALID_DIFFICULTY not in codes(n)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_embedding_is_rejected(value):
    v = VEC.copy()
    v[3] = value
    n = normalize(rec(emb=v), CTX)
    assert n.reject.code == Reject.NON_FINITE_EMBEDDING


def test_zero_vector_is_migrated_with_a_warning():
    n = normalize(rec(emb=np.zeros(384, dtype=np.float32)), CTX)
    assert n.row is not None and Warn.ZERO_VECTOR in codes(n)


def test_missing_embedding_rejected_without_a_model():
    n = normalize(rec(emb=None), RuleContext(dimension=384, reembed=False))
    assert n.reject.code == Reject.MISSING_EMBEDDING


def test_missing_embedding_marked_for_reembedding_with_a_model():
    n = normalize(rec(emb=None), RuleContext(dimension=384, reembed=True))
    assert n.row.needs_embedding and Warn.REEMBEDDED in codes(n)
    # a plan can hash it without the model: the model name stands in for the vector
    assert memory_hash(n.row, "m1") != memory_hash(n.row, "m2")


def test_embedding_of_the_wrong_length_is_rejected():
    n = normalize(rec(emb=np.ones(12, dtype=np.float32)), CTX)
    assert n.reject.code == Reject.DIMENSION_MISMATCH


def test_naive_timestamp_read_in_source_timezone():
    ctx = RuleContext(dimension=384, timezone=ZoneInfo("Europe/Berlin"))
    n = normalize(rec(meta=rb_metadata(item=item(MID, created_at="2025-07-01T12:00:00"))), ctx)
    assert n.row.created_at == datetime(2025, 7, 1, 10, 0, tzinfo=UTC)


def test_naive_timestamp_defaults_to_utc():
    n = normalize(rec(), CTX)
    assert n.row.created_at == datetime(2025, 3, 1, 10, 0, tzinfo=UTC)


def test_unparsable_timestamp_kept_in_metadata_and_trace_time_used():
    when = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    ctx = RuleContext(dimension=384, trace_time=lambda _t: when)
    meta = rb_metadata(timestamp="yesterday-ish", item=item(MID, created_at="not a time"))
    n = normalize(rec(meta=meta), ctx)
    assert n.row.created_at == when
    assert n.row.metadata["original"]["created_at"] == "not a time"
    assert n.row.metadata["original"]["timestamp"] == "yesterday-ish"
    assert Warn.UNPARSABLE_TIMESTAMP in codes(n)


def test_parent_memory_id_kept_as_a_reference_for_the_target_to_resolve():
    parent = "7d1e0f2a-0000-4000-8000-000000000001"
    n = normalize(rec(meta=rb_metadata(item=item(MID, parent_memory_id=parent))), CTX)
    assert n.row.parent_ref == UUID(parent)


def test_non_uuid_parent_maps_like_an_id_and_keeps_the_original():
    n = normalize(rec(meta=rb_metadata(item=item(MID, parent_memory_id="mem-1"))), CTX)
    assert n.row.parent_ref == uuid5(NAMESPACE, "reasoning_memories/mem-1")
    assert n.row.metadata["original"]["parent_memory_id"] == "mem-1"


def test_empty_workspace_is_null():
    n = normalize(rec(meta=rb_metadata(workspace_id="", item=item(MID))), CTX)
    assert n.row.workspace_id is None


def test_pattern_tags_as_string_are_split_on_commas():
    n = normalize(rec(meta=rb_metadata(item=item(MID, pattern_tags="retry, io ,, cache"))), CTX)
    assert n.row.pattern_tags == ["retry", "io", "cache"]
    assert Warn.PATTERN_TAGS_STRING in codes(n)


def test_memory_data_id_differing_from_chroma_id_chroma_wins():
    n = normalize(rec(meta=rb_metadata(item=item("some-other-id"))), CTX)
    assert n.row.id == UUID(MID)
    assert n.row.metadata["original"]["memory_data_id"] == "some-other-id"
    assert Warn.MEMORY_ID_MISMATCH in codes(n)


def test_extra_metadata_keys_and_different_document_kept_in_metadata():
    meta = rb_metadata(item=item(MID, derived_from=["a"]), extra={"agent": "gpt", "score": 0.5})
    n = normalize(rec(doc="something else entirely", meta=meta), CTX)
    assert n.row.metadata["chroma"] == {"agent": "gpt", "score": 0.5}
    assert n.row.metadata["memory_data"] == {"derived_from": ["a"]}
    assert n.row.metadata["original"]["document"] == "something else entirely"
    assert Warn.DOCUMENT_MISMATCH in codes(n)


def test_workspace_filter_skips_other_workspaces_and_empty_string_selects_none():
    ctx = RuleContext(dimension=384, workspaces=frozenset({""}))
    assert normalize(rec(), ctx).skipped
    assert not normalize(rec(meta=rb_metadata(workspace_id=None, item=item(MID))), ctx).skipped


def test_deep_json_is_rejected_not_raised():
    deep: object = "x"
    for _ in range(200):
        deep = {"a": deep}
    n = normalize(rec(meta=rb_metadata(item=item(MID, error_context=deep))), CTX)
    assert n.reject.code == Reject.JSON_TOO_DEEP


def test_traces_rebuilt_from_memories():
    def ob(pos, ts, outcome, task, ws):
        meta = rb_metadata(
            trace_id="t", timestamp=ts, outcome=outcome, task=task, workspace_id=ws, item=item(MID)
        )
        return observe("c", f"m{pos}", meta, pos, CTX)

    obs = [
        ob(2, "2025-01-02T00:00:00", "failure", "short", "w1"),
        ob(1, "2025-01-01T00:00:00", "success", "the longest task text", "w1"),
        ob(3, "2025-01-03T00:00:00", "success", "mid task", "w2"),
    ]
    trace = build_trace(obs[0].trace_id, obs, None, CTX)
    assert trace.task == "the longest task text"
    assert trace.outcome == "success"  # the earliest memory's
    assert trace.timestamp == datetime(2025, 1, 1, tzinfo=UTC)
    assert trace.num_memories == 3
    assert trace.metadata["outcome_counts"] == {"failure": 1, "success": 2}
    assert trace.workspace_id == "w1"
    assert {w.code for w in trace.warnings} == {
        Warn.OUTCOME_DISAGREEMENT,
        Warn.WORKSPACE_DISAGREEMENT,
    }


def test_traces_json_is_the_better_source():
    meta = rb_metadata(trace_id="t", task="truncated", item=item(MID))
    o = observe("c", MID, meta, 1, CTX)
    legacy = {
        "id": "t",
        "task": "the full task",
        "trajectory": [{"step": 1}],
        "outcome": "partial",
        "metadata": {"score": 3},
        "parent_trace_id": "p",
    }
    trace = build_trace(o.trace_id, [o], legacy, CTX)
    assert (trace.task, trace.trajectory, trace.outcome) == (
        "the full task",
        [{"step": 1}],
        "partial",
    )
    assert trace.metadata["traces_json"] == {"score": 3}
    assert trace.parent_trace_id == uuid5(NAMESPACE, "trace/p")


def test_hash_changes_with_any_field_and_with_the_vector():
    a = normalize(rec(), CTX).row
    b = normalize(rec(meta=rb_metadata(item=item(MID, content="other"))), CTX).row
    v = VEC.copy()
    v[0] = np.nextafter(v[0], np.float32(1))
    c = normalize(rec(emb=v), CTX).row
    assert len({memory_hash(a), memory_hash(b), memory_hash(c)}) == 3
    assert memory_hash(a) == memory_hash(normalize(rec(), CTX).row)


def test_hash_is_stable_across_versions():
    """The canonical form is a contract with every target already migrated."""
    assert memory_hash(normalize(rec(), CTX).row) == GOLDEN


GOLDEN = "a69d3c97dc9b21cf906ce6bfc55e13257c41e7f2a426ecff162441e898069735"


def test_json_helper_roundtrip_document():
    assert json.loads(rb_metadata(item=item(MID))["memory_data"])["id"] == MID


def test_synthetic_trace_of_an_id_with_nul_stores_the_cleaned_id():
    """Found by the fuzzer: the trace's metadata kept the raw id and jsonb refused U+0000."""
    meta = rb_metadata(item=item("a\x00b"))
    del meta["trace_id"]
    n = normalize(rec(mid="a\x00b", meta=meta), CTX)
    trace = build_trace(n.row.trace_id, [n.observation], None, CTX)
    assert n.row.source_id == "ab"
    assert trace.metadata["synthetic"]["memory_source_id"] == "ab"
    assert "\x00" not in json.dumps(trace.metadata)


@pytest.mark.parametrize(
    ("written", "read_back"),
    [
        (1e16, 10000000000000000),
        (-2.5e20, -250000000000000000000),
        (1.2345678901234567e19, 12345678901234567000),
    ],
)
def test_big_float_in_metadata_hashes_as_jsonb_reads_it_back(written, read_back):
    """Found by the fuzzer: jsonb returns 1e+16 as 10000000000000000, so verify saw a change."""
    n = normalize(rec(meta=rb_metadata(item=item(MID), extra={"n": written})), CTX)
    stored = json.loads(json.dumps(n.row.metadata).replace(repr(written), str(read_back)))
    assert isinstance(stored["chroma"]["n"], int) and stored["chroma"]["n"] == read_back
    before = memory_hash(n.row)
    n.row.metadata = stored
    assert memory_hash(n.row) == before
