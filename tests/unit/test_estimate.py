"""The size model against what PostgreSQL reported for the 100,000-record demo store."""

from __future__ import annotations

from rbmigrate.engine.estimate import Workload, estimate, estimate_bytes

# measured with pg_relation_size & co. after `rbmigrate --headless` (bench/RESULTS.md)
MEASURED_100K = {"memory_items": 467_386_368, "reasoning_traces": 213_901_312}
MEASURED_HNSW = 203_571_200 + 102_506_496


def workload() -> Workload:
    return Workload(
        source_records=100_000,
        memories=100_000,
        memory_text_bytes=100_000 * 394,  # title+description+content, metadata, error_context
        writes=100_000,
        traces=50_048,
        trace_text_bytes=50_048 * 54,
        traces_to_encode=50_048,
    )


def test_sizes_match_the_measured_store_within_ten_percent():
    got = estimate_bytes(workload(), 384)
    for table, measured in MEASURED_100K.items():
        assert abs(got[table] - measured) / measured < 0.10, (table, got[table], measured)
    assert abs(got["hnsw_indexes"] - MEASURED_HNSW) / MEASURED_HNSW < 0.10


def test_halfvec_saves_about_two_bytes_per_dimension_twice():
    est = estimate(workload(), 384)
    per_row = est["halfvec_saves_bytes"] / (100_000 + 50_048)
    assert 1400 < per_row < 1700  # 2·384 in the heap or TOAST, 2·384 in the HNSW index


def test_duration_takes_the_slower_of_writing_and_encoding():
    s = estimate(workload(), 384)["seconds"]
    parts = s["read"] + max(s["write"], s["encode"]) + s["index"] + s["verify"]
    assert abs(s["total"] - parts) < 0.3  # each part is rounded to 0.1 s
    assert 150 < s["total"] < 360  # measured 236 s end to end on the bench machine
