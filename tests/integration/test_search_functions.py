"""The search functions return k rows under a selective filter (no HNSW post-filter loss)."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from rbmigrate.target.connection import connect
from rbmigrate.target.schema import apply_schema

ROWS = 20_000
RARE = "00000000000000aa"  # 2 % of the rows
COMMON = "00000000000000bb"


@pytest.fixture(scope="module")
def table_20k(pg) -> str:
    name = f"search_{uuid.uuid4().hex[:8]}"
    pg.create_database(name)
    url = pg.url(name)
    with connect(url, autocommit=True) as conn:
        apply_schema(conn, "public", 384)
    rng = np.random.default_rng(2026)
    vectors = rng.standard_normal((ROWS, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    rare = set(rng.choice(ROWS, ROWS // 50, replace=False).tolist())
    with connect(url, autocommit=True) as conn:
        hnsw = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' "
            "AND indexdef ILIKE '%using hnsw%'"
        ).fetchall()
        assert len(hnsw) == 2
        for index_name, _ in hnsw:
            conn.execute(f'DROP INDEX public."{index_name}"')
        with conn.cursor() as cur:
            with cur.copy(
                "COPY reasoning_traces (id, task, task_embedding, outcome, workspace_id) FROM STDIN"
            ) as copy:
                for i in range(ROWS):
                    ws = RARE if i in rare else COMMON
                    copy.write_row((uuid.UUID(int=i + 1), f"task {i}", vectors[i], "success", ws))
            with cur.copy(
                "COPY memory_items (id, trace_id, title, content, content_embedding, "
                "workspace_id, domain_category) FROM STDIN"
            ) as copy:
                for i in range(ROWS):
                    ws = RARE if i in rare else COMMON
                    copy.write_row(
                        (
                            uuid.UUID(int=ROWS + i + 1),
                            uuid.UUID(int=i + 1),
                            f"memory {i}",
                            "content",
                            vectors[i],
                            ws,
                            "rare_domain" if i % 50 == 7 else "common_domain",
                        )
                    )
        for _, indexdef in hnsw:
            conn.execute(indexdef)
        conn.execute("ANALYZE")
    yield url
    pg.drop_database(name)


def queries(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    q = rng.standard_normal((n, 384)).astype(np.float32)
    return list(q / np.linalg.norm(q, axis=1, keepdims=True))


def test_plain_hnsw_query_loses_rows_under_the_filter(table_20k: str):
    """The problem the functions solve: the index scan stops before k matching rows."""
    plain = (
        "SELECT id FROM memory_items WHERE workspace_id = %s "
        "ORDER BY content_embedding <=> %s LIMIT 10"
    )
    with connect(table_20k) as conn:
        for setting in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):
            conn.execute(f"SET {setting} = off")  # the plan an application gets on a big table
        plan = conn.execute("EXPLAIN " + plain, (RARE, queries(1)[0])).fetchall()
        assert "idx_memories_embedding" in " ".join(r[0] for r in plan)
        rows = conn.execute(plain, (RARE, queries(1)[0])).fetchall()
    assert len(rows) < 10


@pytest.mark.parametrize("k", [5, 10, 50])
def test_rare_workspace_gets_k_memories(table_20k: str, k: int):
    with connect(table_20k, autocommit=True) as conn:
        for q in queries(5):
            got = conn.execute(
                "SELECT id, workspace_id FROM search_similar_memories(%s, %s, NULL, %s)",
                (q, k, RARE),
            ).fetchall()
            assert len(got) == k
            assert {r[1] for r in got} == {RARE}
            exact = conn.execute(
                "SELECT id FROM search_similar_memories(%s, %s, NULL, %s, true)", (q, k, RARE)
            ).fetchall()
            recall = len({r[0] for r in got} & {r[0] for r in exact}) / k
            assert recall >= 0.9


def test_rare_domain_and_workspace_together(table_20k: str):
    with connect(table_20k, autocommit=True) as conn:
        q = queries(1)[0]
        got = conn.execute(
            "SELECT domain_category, workspace_id FROM search_similar_memories(%s, 10, %s, %s)",
            (q, "rare_domain", COMMON),
        ).fetchall()
        expected = conn.execute(
            "SELECT count(*) FROM memory_items WHERE domain_category = 'rare_domain' "
            "AND workspace_id = %s",
            (COMMON,),
        ).fetchone()
        assert expected is not None and expected[0] >= 10
        assert len(got) == 10 and set(got) == {("rare_domain", COMMON)}


def test_rare_workspace_gets_k_traces(table_20k: str):
    with connect(table_20k, autocommit=True) as conn:
        for q in queries(3):
            got = conn.execute(
                "SELECT workspace_id FROM search_similar_traces(%s, 10, NULL, NULL, %s)",
                (q, RARE),
            ).fetchall()
            assert len(got) == 10 and {r[0] for r in got} == {RARE}


def test_unfiltered_and_k_edges(table_20k: str):
    with connect(table_20k, autocommit=True) as conn:
        q = queries(1)[0]
        assert (
            len(conn.execute("SELECT * FROM search_similar_memories(%s, 10)", (q,)).fetchall())
            == 10
        )
        assert conn.execute("SELECT * FROM search_similar_memories(%s, 0)", (q,)).fetchall() == []
        stats = conn.execute(
            "SELECT total_memories, total_traces FROM get_reasoning_bank_stats(%s)", (RARE,)
        ).fetchone()
        assert stats == (ROWS // 50, ROWS // 50)
