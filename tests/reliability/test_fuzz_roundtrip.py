"""Fuzzing the whole write path: hypothesis records -> normalize -> binary COPY + merge into a
real PostgreSQL -> read back. Every accepted row must read back equal to what was normalized
(same hash of every stored field and the vector's float32 bytes), as verify relies on."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rbmigrate.records import RuleContext, SourceRecord, memory_hash, normalize
from rbmigrate.records.traces import build_trace
from rbmigrate.target.connection import connect
from rbmigrate.target.readback import fetch_memories, memory_from_row
from rbmigrate.target.schema import apply_schema
from rbmigrate.target.writer import PostgresWriter
from tests.unit.test_normalize_property import DIM, embeddings, metadata

CTX = RuleContext(dimension=DIM, outcome_map={"ok": "success"})
RUN = "fuzz-run"
WRITTEN: list[int] = []  # rows written per example: the property must not pass vacuously


@pytest.fixture(scope="module")
def fuzz_db(pg) -> Iterator[str]:
    name = f"fuzz_{uuid.uuid4().hex[:8]}"
    pg.create_database(name)
    url = pg.url(name)
    with connect(url, autocommit=True) as conn:
        apply_schema(conn, "public", DIM)
    writer = PostgresWriter(url, "public")
    writer.register_run(RUN, "migrate", "fp", {}, {}, {}, "test")
    writer.close()
    yield url
    pg.drop_database(name)


@st.composite
def pages(draw: st.DrawFn) -> list[SourceRecord]:
    n = draw(st.integers(1, 4))
    out = []
    for i in range(n):
        md = draw(metadata()) or {}
        if draw(st.integers(0, 9)) < 8:  # mostly records the rules accept: the subject is the write
            md["outcome"] = draw(st.sampled_from(["success", "failure", " Partial "]))
        vec = draw(embeddings())
        if vec is None or draw(st.booleans()):
            vec = np.asarray(
                draw(st.lists(st.floats(-1, 1, width=32), min_size=DIM, max_size=DIM)), np.float32
            )
        out.append(
            SourceRecord(
                collection="fuzz",
                id=draw(st.text(min_size=1, max_size=30)),
                document=draw(st.none() | st.text(max_size=60)),
                metadata=md,
                embedding=vec,
                position=i,
            )
        )
    return out


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(pages())
def test_accepted_rows_read_back_equal(fuzz_db: str, page: list[SourceRecord]) -> None:
    rows = []
    observations: dict[Any, list[Any]] = {}
    seen: set[Any] = set()
    for rec in page:
        result = normalize(rec, CTX)
        if result.row is None or result.observation is None or result.row.id in seen:
            continue
        if result.row.embedding is None:  # re-embedding needs a model: not this test's subject
            continue
        seen.add(result.row.id)
        result.row.source_hash = memory_hash(result.row, "m")
        rows.append(result.row)
        observations.setdefault(result.observation.trace_id, []).append(result.observation)
    traces = []
    for tid, obs in observations.items():
        trace = build_trace(tid, obs, None, CTX)
        if trace is None:
            rows = [r for r in rows if r.trace_id != tid]
            continue
        trace.source_hash = "t"
        traces.append((trace, None))
    if not rows:
        return
    writer = PostgresWriter(fuzz_db, "public")
    try:
        writer.write_batch(
            RUN,
            traces,
            rows,
            lambda _r: {
                "collection": "fuzz",
                "position": 0,
                "batches": 1,
                "done": False,
                "counts": {},
            },
        )
        got = fetch_memories(writer.conn, "public", "fuzz", [r.source_id for r in rows])
        writer.conn.commit()
    finally:
        writer.close()
    WRITTEN.append(len(rows))
    for row in rows:
        stored = got.get(row.source_id)
        assert stored is not None, row.source_id
        back, stored_hash = memory_from_row(stored)
        assert stored_hash == row.source_hash
        assert memory_hash(back, "m") == row.source_hash, (row, back)


def test_the_fuzzer_really_wrote_rows() -> None:
    """Runs after the property (file order): most examples must reach the database."""
    assert len(WRITTEN) >= 40 and sum(WRITTEN) >= 60, WRITTEN
