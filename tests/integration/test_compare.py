"""Compare and parity: the target answers a query the way Chroma does (real model, real stores)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rbmigrate.config import load
from rbmigrate.demo import write_demo
from rbmigrate.embeddings import Embedder
from rbmigrate.engine import api
from rbmigrate.errors import ExitCode
from rbmigrate.target.connection import connect
from rbmigrate.target.schema import apply_schema
from tests.support.cli import run_cli
from tests.support.pg import PgServer
from tests.support.stores import item, rb_metadata, write_store

QUERIES = [
    "how do I fix a KeyError in the config loader",
    "slow database queries after adding an index",
    "flaky tests in CI",
]
DEMO_RECORDS = 400


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder()


@pytest.fixture(scope="module")
def migrated(
    pg: PgServer, tmp_path_factory: pytest.TempPathFactory, embedder: Embedder
) -> Iterator[dict[str, tuple[Path, str, Path]]]:
    """One migrated demo store per distance space: space -> (store, db url, data dir)."""
    out: dict[str, tuple[Path, str, Path]] = {}
    names = []
    for space in ("l2", "ip", "cosine"):
        base = tmp_path_factory.mktemp(f"cmp-{space}")
        store = base / "store"
        write_demo(store, DEMO_RECORDS, seed=11, space=space, encode=embedder.encode)
        name = f"cmp_{space}_{uuid.uuid4().hex[:8]}"
        pg.create_database(name)
        names.append(name)
        url = pg.url(name)
        data = base / "data"
        outcome = api.pipeline(cfg_for(store, url, data))
        assert outcome.exit_code == ExitCode.OK, outcome.report.get("error")
        assert outcome.report["counts"]["inserted"] == DEMO_RECORDS
        out[space] = (store, url, data)
    yield out
    for name in names:
        pg.drop_database(name)


def cfg_for(store: Path, url: str, data: Path, **source: Any):
    return load(
        None,
        overrides={
            "source": {"chroma_path": str(store), **source},
            "target": {"db_url": url},
            "run": {"data_dir": str(data)},
        },
    )


def agree_up_to_ties(chroma: list[dict], target: list[dict]) -> None:
    """Same ids at the same ranks, except where equal scores may be ordered either way."""
    assert len(chroma) == len(target)
    for a, b in zip(chroma, target, strict=True):
        assert abs(a["similarity"] - b["similarity"]) <= 1e-5, (a, b)
        if a["id"] != b["id"]:
            assert abs(a["similarity"] - b["similarity"]) <= 1e-6, (a, b)
    if len(chroma) == 5 and abs(chroma[-1]["similarity"] - chroma[-2]["similarity"]) > 1e-6:
        assert {h["id"] for h in chroma} == {h["id"] for h in target}


@pytest.mark.parametrize("space", ["l2", "ip", "cosine"])
def test_exact_top5_identical_and_similarities_agree(migrated, space: str, embedder):
    store, url, data = migrated[space]
    cfg = cfg_for(store, url, data)
    for query in QUERIES:
        outcome = api.compare(cfg, query=query, k=5, exact=True)
        assert outcome.exit_code == ExitCode.OK, outcome.report.get("error")
        result = outcome.report["compare"]
        chroma, target = result["chroma"], result["target"]
        assert [h["rank"] for h in chroma] == [1, 2, 3, 4, 5]
        assert [h["id"] for h in chroma] == [h["id"] for h in target]
        agree_up_to_ties(chroma, target)
        assert result["overlap_at_k"] == 1.0
        # the raw distances really are in each side's own space
        q = embedder.encode([query])[0]
        for hit in chroma:
            cos = 1.0 - hit["distance"] / 2 if space == "l2" else 1.0 - hit["distance"]
            assert abs(cos - hit["similarity"]) < 1e-9
        for hit in target:
            assert abs(hit["distance"] - (1.0 - hit["similarity"])) < 1e-9
        assert chroma[0]["similarity"] > 0.2 and np.isclose(np.linalg.norm(q), 1.0, atol=1e-4)


def test_workspace_and_domain_filters_apply_to_both_sides(migrated):
    store, url, data = migrated["l2"]
    ws = "0f1e2d3c4b5a6978"
    cfg = cfg_for(store, url, data, workspaces=[ws])
    outcome = api.compare(cfg, query=QUERIES[0], k=10, exact=True, domain="python_debugging")
    assert outcome.exit_code == ExitCode.OK, outcome.report.get("error")
    result = outcome.report["compare"]
    assert len(result["target"]) == 10
    assert {h["workspace_id"] for h in result["chroma"] + result["target"]} == {ws}
    agree_up_to_ties(result["chroma"], result["target"])


def test_parity_exact_is_perfect_and_hnsw_close(migrated):
    store, url, data = migrated["cosine"]
    cfg = cfg_for(store, url, data)
    exact = api.compare(cfg, parity=8, k=10, exact=True)
    assert exact.exit_code == ExitCode.OK, exact.report.get("error")
    report = exact.report["compare"]
    assert report["queries"] == 32  # 8 per workspace (3) and 8 unfiltered
    assert set(report["by_workspace"]) == {
        "a1b2c3d4e5f60718",
        "0f1e2d3c4b5a6978",
        "9988776655443322",
        "(all)",
    }
    assert report["recall_at_k_min"] == 1.0 and report["worst"] == []
    assert report["latency_ms"]["target"]["p95"] >= report["latency_ms"]["target"]["p50"] > 0
    hnsw = api.compare(cfg, parity=8, k=10).report["compare"]
    assert hnsw["recall_at_k_mean"] >= 0.95


def test_parity_exact_fails_when_the_target_lost_a_memory(migrated):
    store, url, data = migrated["ip"]
    ws = "9988776655443322"
    cfg = cfg_for(store, url, data, workspaces=[ws])
    with connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT id, source_id, content_embedding FROM memory_items WHERE workspace_id = %s "
            "ORDER BY id LIMIT 1",
            (ws,),
        ).fetchone()
        assert row is not None
        # a memory whose vector was damaged in the target drops out of its own results
        conn.execute(
            "UPDATE memory_items SET content_embedding = %s WHERE id = %s",
            (np.full(384, 0.05, dtype=np.float32), row[0]),
        )
        try:
            outcome = api.compare(cfg, parity=1000, k=5, exact=True)  # every memory of ws
        finally:
            conn.execute(
                "UPDATE memory_items SET content_embedding = %s WHERE id = %s", (row[2], row[0])
            )
    assert outcome.exit_code == ExitCode.VERIFY_FAILED
    report = outcome.report["compare"]
    assert set(report["by_workspace"]) == {ws}
    assert report["recall_at_k_min"] < 1.0
    assert any(row[1] in w["missing"] for w in report["worst"])


def test_cli_compare_json_shape(migrated):
    store, url, data = migrated["l2"]
    where = ["--chroma-path", str(store), "--db-url", url]
    res = run_cli(
        ["--headless", "compare", QUERIES[1], *where, "--k", "3", "--json"],
        data,
    )
    assert res.code == 0, res.err
    out = res.json()
    assert {"query", "k", "chroma", "target", "overlap_at_k", "latency_ms"} <= set(out)
    assert out["k"] == 3 and len(out["chroma"]) == 3 and len(out["target"]) == 3
    for hit in out["chroma"] + out["target"]:
        assert {"id", "source_id", "title", "distance", "similarity"} <= set(hit)
        assert hit["title"]
    assert set(out["latency_ms"]) == {"chroma", "target"}
    table = run_cli(
        ["--headless", "compare", QUERIES[1], "--chroma-path", str(store), "--db-url", url], data
    )
    assert table.code == 0, table.err
    assert "overlap@5" in table.out and out["chroma"][0]["title"][:30] in table.out
    parity = run_cli(
        ["--headless", "compare", "--parity", "3", *where, "--json"],
        data,
    )
    assert parity.code == 0, parity.err
    p = parity.json()
    assert {"queries", "k", "recall_at_k_mean", "recall_at_k_min", "by_workspace", "worst"} <= set(
        p
    )
    assert p["by_workspace"]["(all)"]["queries"] == 3


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["compare", ""], "query is empty"),
        (["compare", "   "], "query is empty"),
        (["compare", "x", "--k", "0"], "between 1 and 1000"),
        (["compare", "x", "--k", "1001"], "between 1 and 1000"),
        (["compare", "x", "--workspace", "nope"], "workspace 'nope' has no memories"),
        (["compare", "--parity", "0"], "at least 1"),
    ],
)
def test_cli_compare_bad_input(migrated, args: list[str], words: str):
    store, url, data = migrated["l2"]
    res = run_cli(
        ["--headless", *args, "--chroma-path", str(store), "--db-url", url], data, timeout=120
    )
    assert res.code == ExitCode.USAGE, (res.out, res.err)
    assert words in res.err
    assert "Traceback" not in res.err + res.out


def test_cli_compare_model_dimension_mismatch(tmp_path: Path, db_url: str, data_dir: Path):
    records = [
        (f"m{i}", f"t{i}\nd\nc", rb_metadata(item=item(f"m{i}"), trace_id=f"t{i}"), None)
        for i in range(20)
    ]
    store = write_store(tmp_path / "small", records, dim=8)
    with connect(db_url, autocommit=True) as conn:
        apply_schema(conn, "public", 8)
    res = run_cli(
        ["--headless", "compare", "anything", "--chroma-path", str(store), "--db-url", db_url],
        data_dir,
    )
    assert res.code == ExitCode.USAGE, res.err
    assert "makes 384-d vectors but the collection 'reasoning_memories' holds 8-d" in res.err
    assert "Traceback" not in res.err


def test_cli_compare_without_migrated_target(tmp_path: Path, db_url: str, data_dir: Path):
    store = tmp_path / "demo"
    write_demo(store, 20, embeddings="random")
    res = run_cli(
        ["--headless", "compare", "x", "--chroma-path", str(store), "--db-url", db_url], data_dir
    )
    assert res.code == ExitCode.SCHEMA, res.err
    assert "no ReasoningBank tables" in res.err
