"""Property: whatever a record holds, normalize() returns a storable row or a coded reject."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rbmigrate.records import Reject, RuleContext, SourceRecord, memory_hash, normalize
from rbmigrate.records.ids import DIFFICULTIES

DIM = 8
CTX = RuleContext(dimension=DIM, outcome_map={"ok": "success"})

texts = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=40)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True), texts
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(texts, inner, max_size=4)),
    max_leaves=12,
)
FIELDS = [
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
    "derived_from",
]
items = st.dictionaries(st.sampled_from(FIELDS) | texts, json_values, max_size=10)


@st.composite
def memory_data(draw: st.DrawFn) -> Any:
    kind = draw(st.sampled_from(["json", "raw", "none", "value"]))
    if kind == "json":
        return json.dumps(draw(items), allow_nan=True)
    if kind == "raw":
        return draw(texts)
    if kind == "value":
        return draw(scalars)
    return None


meta_values = st.one_of(
    scalars, st.lists(st.one_of(st.integers(), texts, st.booleans()), max_size=3)
)


@st.composite
def metadata(draw: st.DrawFn) -> dict[str, Any] | None:
    if draw(st.booleans()) and draw(st.booleans()):
        return None
    md: dict[str, Any] = {}
    for key in (
        "trace_id",
        "task",
        "outcome",
        "timestamp",
        "workspace_id",
        "domain_category",
        "difficulty_level",
        "has_error_context",
    ):
        if draw(st.booleans()):
            md[key] = draw(
                st.one_of(
                    meta_values,
                    st.sampled_from(
                        [
                            "success",
                            " Failure ",
                            "ok",
                            "partial",
                            "2025-01-01T00:00:00",
                            "",
                            "00000000-0000-4000-8000-000000000001",
                        ]
                    ),
                )
            )
    if draw(st.booleans()):
        md["memory_data"] = draw(memory_data())
    md.update(draw(st.dictionaries(texts, meta_values, max_size=3)))
    return md


@st.composite
def embeddings(draw: st.DrawFn) -> np.ndarray | None:
    kind = draw(st.sampled_from(["ok", "none", "nan", "zero", "short"]))
    if kind == "none":
        return None
    size = DIM - 3 if kind == "short" else DIM
    vals = draw(st.lists(st.floats(-1e3, 1e3, width=32), min_size=size, max_size=size))
    v = np.asarray(vals, dtype=np.float32)
    if kind == "nan":
        v[0] = np.nan
    if kind == "zero":
        v[:] = 0
    return v


records = st.builds(
    SourceRecord,
    collection=st.sampled_from(["reasoning_memories", "c2"]),
    id=texts,
    document=st.one_of(st.none(), texts),
    metadata=metadata(),
    embedding=embeddings(),
)


def storable(value: Any) -> bool:
    """What PostgreSQL text/jsonb refuse: NUL, lone surrogates, NaN/Infinity."""
    if isinstance(value, str):
        return "\x00" not in value and not any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(storable(k) and storable(v) for k, v in value.items())
    if isinstance(value, list):
        return all(storable(v) for v in value)
    return value is None or isinstance(value, bool | int)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records, st.booleans())
def test_any_record_gives_a_storable_row_or_a_coded_reject(
    record: SourceRecord, reembed: bool
) -> None:
    ctx = RuleContext(dimension=DIM, outcome_map={"ok": "success"}, reembed=reembed)
    result = normalize(record, ctx)
    if result.skipped:
        return
    if result.reject is not None:
        assert result.row is None
        assert result.reject.code in {r.value for r in Reject}
        assert result.reject.code != Reject.INTERNAL_ERROR, result.reject.message
        return
    row = result.row
    assert row is not None
    for text in (row.title, row.content, row.source_id, row.source_collection):
        assert isinstance(text, str) and storable(text)
    for optional in (row.description, row.domain_category, row.workspace_id):
        assert optional is None or (isinstance(optional, str) and storable(optional))
    assert storable(row.error_context) and storable(row.metadata)
    assert all(isinstance(t, str) and storable(t) for t in row.pattern_tags)
    assert row.difficulty_level in (None, *DIFFICULTIES)
    assert -(2**31) <= row.evolution_stage < 2**31
    assert row.created_at.tzinfo is not None
    assert row.embedding is None or (
        row.embedding.shape == (DIM,) and np.isfinite(row.embedding).all()
    )
    json.dumps(row.metadata, allow_nan=False)
    assert len(memory_hash(row, "m")) == 64
