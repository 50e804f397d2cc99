"""The dry run on real stores and a real database: categories, codes, counts, no writes."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from tests.support.cases import cases, dump, expected_codes, write_cases_store
from tests.support.cli import run_cli
from tests.support.stores import item, rb_metadata, tree_state, write_store


@pytest.fixture
def cases_store(tmp_path: Path) -> Path:
    return write_cases_store(tmp_path / "cases")


def test_every_rule_lands_in_its_category_with_its_code(cases_store, db_url, data_dir):
    res = run_cli(
        [
            "--headless",
            "plan",
            "--chroma-path",
            str(cases_store),
            "--db-url",
            db_url,
            "--max-rejects",
            "-1",
            "--json",
        ],
        data_dir,
        RBMIGRATE_REEMBED_MISSING="false",
    )
    assert res.code == 0, res.err
    report = res.json()
    plan, counts = report["plan"], report["counts"]
    expected_invalid: dict[str, int] = {}
    for *_r, cat, code in cases():
        if cat == "invalid":
            expected_invalid[code] = expected_invalid.get(code, 0) + 1
    assert {k: v["count"] for k, v in plan["invalid_by_code"].items()} == expected_invalid, dump(
        plan
    )
    for code, n in expected_codes().items():
        assert report["warnings_by_code"].get(code, 0) >= n, (
            code,
            dump(report["warnings_by_code"]),
        )
    assert plan["new"] == sum(1 for c in cases() if c[3] == "new")
    assert plan["invalid"] == sum(expected_invalid.values())
    # the counts reconcile, for the plan and for the counts it reports
    assert counts["source_records"] == len(cases())
    assert (
        counts["source_records"]
        == plan["new"] + plan["changed"] + plan["unchanged"] + plan["invalid"] + plan["skipped"]
    )
    assert counts["source_records"] == sum(
        counts[k] for k in ("inserted", "updated", "unchanged", "rejected", "skipped")
    )
    # samples say which record and why
    sample = plan["invalid_by_code"]["invalid_outcome"]["samples"][0]
    assert sample["source_id"].endswith("000000000011") and "won" in sample["message"]
    # the child-before-parent link is not reported missing; the dangling one is
    assert report["warnings_by_code"]["parent_not_found"] == 1
    # traces: T1, T2, trace-abc, one synthetic
    assert plan["traces"]["new"] == 4
    # the plan wrote nothing: the target has no tables at all
    with psycopg.connect(db_url) as conn:
        n = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()[0]
    assert n == 0
    assert plan["schema"]["state"] == "missing"


def test_missing_embedding_is_reembedded_when_a_model_is_on(cases_store, db_url, data_dir):
    res = run_cli(
        [
            "--headless",
            "plan",
            "--chroma-path",
            str(cases_store),
            "--db-url",
            db_url,
            "--max-rejects",
            "-1",
            "--json",
        ],
        data_dir,
    )
    report = res.json()
    assert "missing_embedding" not in report["plan"]["invalid_by_code"]
    assert report["plan"]["needs_embedding"] == 1
    assert report["warnings_by_code"]["reembedded"] == 1


def test_rejects_above_max_rejects_exit_1(cases_store, db_url, data_dir):
    res = run_cli(
        [
            "--headless",
            "plan",
            "--chroma-path",
            str(cases_store),
            "--db-url",
            db_url,
            "--max-rejects",
            "2",
        ],
        data_dir,
    )
    assert res.code == 1
    assert "would be rejected" in res.err and "max_rejects" in res.err


def test_workspace_filter_counts_other_records_as_skipped(cases_store, db_url, data_dir):
    res = run_cli(
        [
            "--headless",
            "plan",
            "--chroma-path",
            str(cases_store),
            "--db-url",
            db_url,
            "--workspace",
            "fedcba9876543210",
            "--max-rejects",
            "-1",
            "--json",
        ],
        data_dir,
    )
    report = res.json()
    assert report["plan"]["new"] == 1
    assert report["plan"]["skipped"] == len(cases()) - 1
    assert report["counts"]["skipped"] == len(cases()) - 1


def test_unselected_collections_are_skipped_and_counted(tmp_path, db_url, data_dir):
    store = tmp_path / "two"
    write_store(store, [("m1", "T\nD\nC", rb_metadata(item=item("m1")), None)])
    write_store(
        store,
        [("x1", "other", {"kind": "note"}, None), ("x2", "other", {"kind": "note"}, None)],
        collection="notes_collection",
    )
    res = run_cli(
        ["--headless", "plan", "--chroma-path", str(store), "--db-url", db_url, "--json"], data_dir
    )
    assert res.code == 0, res.err
    report = res.json()
    layouts = {c["name"]: c["layout"] for c in report["source"]["collections"]}
    assert layouts == {"reasoning_memories": "reasoningbank", "notes_collection": "unknown"}
    assert report["counts"]["source_records"] == 3 and report["counts"]["skipped"] == 2


def test_plan_leaves_the_source_byte_identical(cases_store, db_url, data_dir):
    before = tree_state(cases_store)
    res = run_cli(
        [
            "--headless",
            "plan",
            "--chroma-path",
            str(cases_store),
            "--db-url",
            db_url,
            "--max-rejects",
            "-1",
        ],
        data_dir,
    )
    assert res.code == 0, res.err
    assert tree_state(cases_store) == before


def test_hnsw_space_trap_reported(tmp_path, db_url, data_dir):
    """A 0.x store kept its space in metadata; 1.x's configuration says l2."""
    import sqlite3

    store = write_store(tmp_path / "s", [("m1", "T\nD\nC", rb_metadata(item=item("m1")), None)])
    db = sqlite3.connect(store / "chroma.sqlite3")
    cid = db.execute("SELECT id FROM collections").fetchone()[0]
    db.execute(
        "INSERT INTO collection_metadata (collection_id, key, str_value) VALUES (?, 'hnsw:space', 'cosine')",
        (cid,),
    )
    db.commit()
    db.close()
    res = run_cli(
        ["--headless", "plan", "--chroma-path", str(store), "--db-url", db_url, "--json"], data_dir
    )
    report = res.json()
    assert report["source"]["collections"][0]["space"] == "cosine"
    codes = [p["code"] for p in report["plan"]["collection_problems"]]
    assert "space_from_metadata" in codes
