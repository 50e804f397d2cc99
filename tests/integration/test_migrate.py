"""Migrate on real parts: every rule lands as specified, counts reconcile, re-runs are
no-ops, changes update exactly what changed, rollback restores the target exactly.

Every test runs twice, over the direct connection and over REST (a PostgREST gateway in
front of the same database): the transports must leave the target in the same state."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID, uuid5

import chromadb
import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector

from rbmigrate.records.ids import NAMESPACE
from tests.support.cases import MISSING_ID, NAN_ID, T1, cases, uid, write_cases_store
from tests.support.cli import Result, run_cli
from tests.support.stores import item, rb_metadata, write_store
from tests.support.targets import TRANSPORTS, Target, make_target


@pytest.fixture(params=TRANSPORTS)
def target(request: pytest.FixtureRequest, db_url: str) -> Iterator[Target]:
    with make_target(request.param, db_url) as t:
        yield t


def cli(args: list[str], target: Target, data_dir: Path, **env: str) -> Result:
    return run_cli([*args, *target.args], data_dir, **target.env, **env)


def migrate(store: Path, target: Target, data_dir: Path, *extra: str, **env: str) -> Result:
    return cli(
        ["--headless", "migrate", "--chroma-path", str(store), "--json", *extra],
        target,
        data_dir,
        **env,
    )


def rows(db_url: str, sql: str, *params: object) -> list[tuple]:
    with psycopg.connect(db_url) as conn:
        conn.execute("SET search_path TO public, extensions")
        register_vector(conn)
        return conn.execute(sql, params).fetchall()


def memory(db_url: str, source_id: str) -> dict:
    got = rows(db_url, "SELECT to_jsonb(m) FROM memory_items m WHERE source_id = %s", source_id)
    assert len(got) == 1, f"{source_id}: {len(got)} rows"
    return got[0][0]


def table_state(db_url: str) -> list[tuple]:
    """Every row of both tables, for before/after equality."""
    return rows(
        db_url,
        "SELECT 'm', id::text, to_jsonb(m)::text FROM memory_items m UNION ALL "
        "SELECT 't', id::text, to_jsonb(t)::text FROM reasoning_traces t ORDER BY 1, 2",
    )


def assert_reconciles(report: dict) -> None:
    c = report["counts"]
    assert (
        c["source_records"]
        == c["inserted"] + c["updated"] + c["unchanged"] + c["rejected"] + c["skipped"]
    ), c


@pytest.fixture
def cases_store(tmp_path: Path) -> Path:
    return write_cases_store(tmp_path / "cases")


def test_every_rule_lands_as_specified(cases_store, target, data_dir):
    db_url = target.db_url
    res = migrate(cases_store, target, data_dir, "--max-rejects", "-1")
    assert res.code == 0, res.err
    report = res.json()
    assert_reconciles(report)
    assert report["verify"]["ok"] and report["verify"]["checked"] == report["counts"]["inserted"]
    # directly, verify runs while the task encoder works (all but the task embeddings)
    beside = [m["text"] for m in report["messages"] if "while the task encoder ran" in m["text"]]
    traces = report["verify"]["traces"]["checked"]
    assert beside == (
        []
        if target.rest
        else [
            f"verified {report['counts']['inserted']} memories and {traces} traces while the"
            " task encoder ran"
        ]
    )
    assert traces == report["counts"]["traces_inserted"] > 0
    assert report["verify"]["traces"]["no_embedding"] == 0
    assert report["rejects_by_code"] == {
        "invalid_outcome": 1,
        "non_finite_embedding": 1,
        "duplicate_id": 1,
    }
    # ids: canonical UUIDs, uuid5 for others, Chroma ids verbatim
    assert memory(db_url, "legacy-memory-7")["id"] == str(
        uuid5(NAMESPACE, "reasoning_memories/legacy-memory-7")
    )
    assert memory(db_url, uid(24).upper())["id"] == uid(24)
    trace = rows(db_url, "SELECT id, source_id FROM reasoning_traces WHERE source_id = 'trace-abc'")
    assert trace == [(uuid5(NAMESPACE, "trace/trace-abc"), "trace-abc")]
    synthetic = memory(db_url, uid(4))["trace_id"]
    meta = rows(db_url, "SELECT metadata FROM reasoning_traces WHERE id = %s", synthetic)[0][0]
    assert meta["synthetic"]["memory_source_id"] == uid(4)
    # text and JSON made storable
    assert memory(db_url, uid(5))["title"] == "Title"
    assert "\ufffd" in memory(db_url, uid(6))["title"]
    assert memory(db_url, uid(7))["error_context"] == {"score": None}
    assert memory(db_url, uid(8))["title"] == "Recovered title"
    # enums, vectors, times
    m12 = memory(db_url, uid(12))
    assert (
        m12["difficulty_level"] is None
        and m12["metadata"]["original"]["difficulty_level"] == "legendary"
    )
    zero = rows(db_url, "SELECT content_embedding FROM memory_items WHERE source_id = %s", uid(14))[
        0
    ][0]
    assert not np.any(zero.to_numpy())
    reembedded = rows(
        db_url,
        "SELECT content_embedding, metadata FROM memory_items WHERE source_id = %s",
        MISSING_ID,
    )[0]
    assert (
        abs(np.linalg.norm(reembedded[0].to_numpy()) - 1) < 1e-3
        and reembedded[1]["reembedded"] is True
    )
    m16 = memory(db_url, uid(16))
    assert m16["metadata"]["original"]["created_at"] == "someday"
    assert m16["created_at"].startswith("2025-03-01T10:00:00")  # the trace's time
    # parents: a child before its parent resolves; a dangling one is kept in metadata
    assert memory(db_url, uid(18))["parent_memory_id"] == uid(19)
    m17 = memory(db_url, uid(17))
    assert m17["parent_memory_id"] is None and m17["metadata"][
        "unresolved_parent_memory_id"
    ] == uid(999)
    assert report["warnings_by_code"]["parent_not_found"] == 1
    assert memory(db_url, uid(20))["workspace_id"] is None
    assert memory(db_url, uid(21))["pattern_tags"] == ["a", "b"]
    assert memory(db_url, uid(22))["metadata"]["original"]["memory_data_id"] == "something-else"
    m23 = memory(db_url, uid(23))
    assert m23["metadata"]["original"]["document"] == "a different document"
    assert m23["metadata"]["chroma"] == {"agent": "x"}
    # rejects: in rejects.jsonl with the original record, never in the target
    lines = [json.loads(x) for x in Path(report["rejects_file"]).read_text().splitlines()]
    assert sorted(x["code"] for x in lines) == [
        "duplicate_id",
        "invalid_outcome",
        "non_finite_embedding",
    ]
    nan = next(x for x in lines if x["source_id"] == NAN_ID)
    assert (
        nan["record"]["document"]
        and nan["record"]["metadata"]["trace_id"] == "aaaaaaaa-0000-4000-8000-000000000002"
    )
    assert rows(db_url, "SELECT count(*) FROM memory_items WHERE source_id = %s", uid(11)) == [(0,)]
    total = rows(db_url, "SELECT count(*), count(DISTINCT id) FROM memory_items")[0]
    assert total == (report["counts"]["inserted"], report["counts"]["inserted"])
    # the run is recorded
    run = rows(
        db_url, "SELECT status, counts FROM rbmigrate_runs WHERE run_id = %s", report["run_id"]
    )[0]
    assert run[0] == "ok" and run[1]["source_records"] == len(cases())


def test_rejects_above_max_rejects_exit_1_but_keep_everything(cases_store, target, data_dir):
    res = migrate(cases_store, target, data_dir)
    assert res.code == 1
    report = res.json()
    assert report["verify"]["ok"] and report["counts"]["rejected"] == 3
    assert "max_rejects" in res.err


def _versions(db_url: str) -> list[tuple]:
    return rows(
        db_url,
        "SELECT id, xmin::text FROM memory_items UNION ALL SELECT id, xmin::text FROM reasoning_traces ORDER BY 1",
    )


def test_rerun_is_a_noop_and_says_so(cases_store, target, data_dir):
    """The second run finds the source byte-identical and checks the target against the
    first run's reading; the third, without that reading, reads every record again. Both
    rewrite nothing and report what the first found."""
    db_url = target.db_url
    first = migrate(cases_store, target, data_dir, "--max-rejects", "-1").json()
    before = _versions(db_url)
    runs = data_dir / "runs"
    for quick in (True, False):
        res = migrate(cases_store, target, data_dir, "--max-rejects", "-1")
        again = res.json()
        assert res.code == 0, res.err
        c, f = again["counts"], first["counts"]
        assert c["inserted"] == c["updated"] == c["traces_inserted"] == c["traces_updated"] == 0
        assert c["unchanged"] == f["inserted"]
        assert (c["rejected"], c["skipped"], c["warnings"]) == (
            f["rejected"],
            f["skipped"],
            f["warnings"],
        )
        assert again["rejects_by_code"] == first["rejects_by_code"]
        assert again["verify"]["ok"] and again["verify"]["checked"] == f["inserted"]
        codes = {m["code"] for m in again["messages"]}
        assert "no_op" in codes
        assert ("unchanged_source" in codes) is quick
        assert ("write" in again["timings_s"]) is not quick
        rejects = (runs / again["run_id"] / "rejects.jsonl").read_text()
        assert rejects == (runs / first["run_id"] / "rejects.jsonl").read_text()
        assert _versions(db_url) == before  # not one row rewritten
        assert_reconciles(again)
        (runs / again["run_id"] / "unchanged.json").unlink()  # the next run reads it all


@pytest.mark.parametrize("target", ["direct"], indirect=True)  # REST: the no-op test above
def test_unchanged_source_but_changed_target_migrates(tmp_path, target, data_dir):
    """The shortcut of an unchanged source trusts nothing of the target: a row deleted or a
    task embedding lost since is found and written again."""
    db_url = target.db_url
    store = _small_store(tmp_path / "s")
    assert migrate(store, target, data_dir).code == 0
    rows(db_url, "DELETE FROM memory_items WHERE source_id = %s RETURNING id", uid(5))
    res = migrate(store, target, data_dir)
    assert res.code == 0, res.err
    second = res.json()
    messages = [m["text"] for m in second["messages"] if m["code"] == "unchanged_source"]
    assert messages and "1 missing" in messages[0], second["messages"]
    assert (second["counts"]["inserted"], second["counts"]["unchanged"]) == (1, 39)
    assert memory(db_url, uid(5))["title"] == "T5"
    rows(
        db_url,
        "UPDATE reasoning_traces SET task_embedding = NULL"
        " WHERE id = (SELECT min(id::text)::uuid FROM reasoning_traces) RETURNING id",
    )
    third = migrate(store, target, data_dir).json()
    messages = [m["text"] for m in third["messages"] if m["code"] == "unchanged_source"]
    assert messages and "without a task embedding" in messages[0], third["messages"]
    assert third["verify"]["ok"] and third["verify"]["traces"]["no_embedding"] == 0
    fourth = migrate(store, target, data_dir).json()
    assert "write" not in fourth["timings_s"] and fourth["verify"]["ok"]


def _small_store(path: Path, n: int = 40) -> Path:
    recs = [
        (
            uid(i),
            f"T{i}\nD\nC",
            rb_metadata(trace_id=T1 if i % 2 else uid(1000 + i), item=item(uid(i), title=f"T{i}")),
            None,
        )
        for i in range(n)
    ]
    return write_store(path, recs)


def test_changed_source_updates_exactly_the_changed_rows_then_rollback(tmp_path, target, data_dir):
    db_url = target.db_url
    store = _small_store(tmp_path / "s")
    first = migrate(store, target, data_dir)
    assert first.code == 0, first.err
    state_after_first = table_state(db_url)
    xmin = dict(rows(db_url, "SELECT source_id, xmin::text FROM memory_items"))
    client = chromadb.PersistentClient(path=str(store))
    col = client.get_collection("reasoning_memories")
    changed = [uid(3), uid(4), uid(5)]
    col.update(
        ids=changed,
        metadatas=[
            rb_metadata(
                trace_id=uid(1000 + int(i[-2:])) if int(i[-2:]) % 2 == 0 else T1,
                item=item(i, title="edited"),
            )
            for i in changed
        ],
    )
    col.add(
        ids=[uid(90), uid(91)],
        embeddings=[np.ones(384, dtype=np.float32) / 384**0.5] * 2,
        documents=["n\nn\nn"] * 2,
        metadatas=[rb_metadata(item=item(uid(90))), rb_metadata(item=item(uid(91)))],
    )
    col.delete(ids=[uid(7)])
    client.clear_system_cache()
    res = migrate(store, target, data_dir)
    assert res.code == 0, res.err
    second = res.json()
    assert (second["counts"]["inserted"], second["counts"]["updated"]) == (2, 3)
    assert second["counts"]["unchanged"] == 40 - 3 - 1
    assert second["verify"]["extra"] == 1  # uid(7) is gone from the source, kept in the target
    now = dict(rows(db_url, "SELECT source_id, xmin::text FROM memory_items"))
    touched = {sid for sid, x in now.items() if xmin.get(sid) != x}
    assert touched == set(changed) | {uid(90), uid(91)}
    assert memory(db_url, uid(3))["title"] == "edited"
    # rollback of the second run restores the target exactly as the first left it
    back = cli(["--headless", "rollback", second["run_id"], "--json"], target, data_dir)
    assert back.code == 0, back.err
    assert back.json()["rollback"]["deleted"]["memory_items"] == 2
    assert table_state(db_url) == state_after_first
    # delete-missing removes the deleted record, and that too can be rolled back
    third = migrate(store, target, data_dir, "--delete-missing").json()
    assert (
        third["counts"]["deleted"] == 1 and third["verify"]["ok"] and third["verify"]["extra"] == 0
    )
    assert rows(db_url, "SELECT count(*) FROM memory_items WHERE source_id = %s", uid(7)) == [(0,)]


def test_rollback_refuses_when_a_later_run_touched_the_rows(tmp_path, target, data_dir):
    store = _small_store(tmp_path / "s", 10)
    first = migrate(store, target, data_dir).json()
    client = chromadb.PersistentClient(path=str(store))
    client.get_collection("reasoning_memories").update(
        ids=[uid(1)], metadatas=[rb_metadata(trace_id=T1, item=item(uid(1), title="again"))]
    )
    client.clear_system_cache()
    assert migrate(store, target, data_dir).json()["counts"]["updated"] == 1
    res = cli(["--headless", "rollback", first["run_id"]], target, data_dir)
    assert res.code == 2 and "later run" in res.err
    res = cli(["--headless", "rollback", "no-such-run"], target, data_dir)
    assert res.code == 2 and "does not exist" in res.err


def target_has_task_embeddings(db_url: str) -> bool:
    from rbmigrate.target.connection import ResolvedTarget
    from rbmigrate.target.postgres import PostgresStore

    store = PostgresStore(ResolvedTarget(db_url, "postgres"))
    try:
        store.schema_status(384)
        return store.has_task_embeddings()
    finally:
        store.close()


def test_initial_load_builds_indexes_after_and_incremental_keeps_them(tmp_path, target, data_dir):
    """Over REST the indexes are never dropped (that needs the owner): kept, not rebuilt."""
    db_url = target.db_url
    store = _small_store(tmp_path / "s", 30)
    assert not target_has_task_embeddings(db_url)  # an initial load: the model loads early
    before = rows(db_url, "SELECT 'idx_memories_embedding'::regclass::oid") if target.rest else []
    report = migrate(store, target, data_dir).json()
    assert (report["timings_s"].get("index") is None) == target.rest
    if target.rest:
        assert rows(db_url, "SELECT 'idx_memories_embedding'::regclass::oid") == before
    idx = dict(
        rows(
            db_url,
            "SELECT indexname, indexdef FROM pg_indexes WHERE indexname IN "
            "('idx_memories_embedding', 'idx_traces_embedding', 'idx_memories_tags')",
        )
    )
    assert "hnsw" in idx["idx_memories_embedding"] and "hnsw" in idx["idx_traces_embedding"]
    assert target_has_task_embeddings(db_url)  # the next run does not preload the model
    assert rows(
        db_url, "SELECT deferred_indexes FROM rbmigrate_runs WHERE run_id = %s", report["run_id"]
    ) == [([],)]
    oid = rows(db_url, "SELECT 'idx_memories_embedding'::regclass::oid")
    client = chromadb.PersistentClient(path=str(store))
    client.get_collection("reasoning_memories").add(
        ids=[uid(77)],
        embeddings=[np.ones(384, dtype=np.float32)],
        documents=["a\nb\nc"],
        metadatas=[rb_metadata(item=item(uid(77)))],
    )
    client.clear_system_cache()
    second = migrate(store, target, data_dir).json()
    assert second["counts"]["inserted"] == 1 and "index" not in second["timings_s"]
    assert rows(db_url, "SELECT 'idx_memories_embedding'::regclass::oid") == oid


def test_retry_rejects_after_a_fix(cases_store, target, data_dir):
    db_url = target.db_url
    first = migrate(cases_store, target, data_dir, "--max-rejects", "-1").json()
    rejects = first["rejects_file"]
    res = migrate(
        cases_store,
        target,
        data_dir,
        "--retry-rejects",
        rejects,
        "--max-rejects",
        "-1",
        RBMIGRATE_OUTCOME_MAP='{"won": "success"}',
    )
    assert res.code == 0, res.err
    retry = res.json()
    assert retry["counts"]["inserted"] == 1  # the invalid outcome, now mapped
    assert memory(db_url, uid(11))["source_id"] == uid(11)


def test_resume_with_nothing_to_resume_starts_a_new_run(tmp_path, target, data_dir):
    store = _small_store(tmp_path / "s", 5)
    res = migrate(store, target, data_dir, "--resume")
    assert res.code == 0, res.err
    assert any("starting a new run" in m["text"] for m in res.json()["messages"])
    assert res.json()["counts"]["inserted"] == 5


def test_pipeline_plans_migrates_verifies(tmp_path, target, data_dir):
    db_url = target.db_url
    store = _small_store(tmp_path / "s", 12)
    res = cli(["--headless", "--chroma-path", str(store), "--json"], target, data_dir)
    assert res.code == 0, res.err
    report = res.json()
    assert report["command"] == "headless" and report["target"]["transport"] == (
        "rest" if target.rest else "postgres"
    )
    assert (
        report["plan"]["new"] == 12
        and report["counts"]["inserted"] == 12
        and report["verify"]["ok"]
    )
    if not target.rest:  # over REST the schema was pasted beforehand, as a user would
        assert report["schema"]["applied"]
    assert_reconciles(report)
    traces = rows(db_url, "SELECT count(*), count(task_embedding) FROM reasoning_traces")[0]
    assert traces[0] == traces[1] > 0  # every trace has its task embedding
    deep = cli(
        ["--headless", "verify", "--deep", "--chroma-path", str(store), "--json"], target, data_dir
    )
    assert deep.code == 0, deep.err
    assert deep.json()["verify"]["vectors_compared"] == 12


def test_verify_catches_a_tampered_row(tmp_path, target, data_dir):
    db_url = target.db_url
    store = _small_store(tmp_path / "s", 8)
    assert migrate(store, target, data_dir).code == 0
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE memory_items SET content = 'tampered' WHERE source_id = %s", (uid(2),))
        conn.execute("DELETE FROM memory_items WHERE source_id = %s", (uid(3),))
        trace = conn.execute(
            "UPDATE reasoning_traces SET task = 'tampered' WHERE id ="
            " (SELECT trace_id FROM memory_items WHERE source_id = %s) RETURNING id",
            (uid(4),),
        ).fetchone()[0]
    res = cli(["--headless", "verify", "--chroma-path", str(store), "--json"], target, data_dir)
    assert res.code == 1
    v = res.json()["verify"]
    assert (v["missing"], v["mismatched"]) == (1, 1)
    assert v["samples"]["mismatched"] == [f"reasoning_memories/{uid(2)}"]
    # the trace kept its stored hash: only hashing its content again finds it
    assert v["traces"]["mismatched"] == 1 and v["samples"]["trace_mismatched"] == [str(trace)]


def test_uuid_helper_matches_stdlib():
    assert uuid5(NAMESPACE, "x/y") == UUID(str(uuid5(NAMESPACE, "x/y")))


def test_closing_verify_counts_traces_left_without_embedding(tmp_path, db_url, data_dir):
    """The verify beside the encoder leaves the task embeddings to the end: a trace the fill
    left without one is counted there, and only there."""
    from rbmigrate.config import load
    from rbmigrate.engine.context import RunContext
    from rbmigrate.engine.session import Session
    from rbmigrate.engine.verify import VerifyResult, run_verify

    store = _small_store(tmp_path / "s")
    assert run_cli(["--headless", "migrate", "--chroma-path", str(store), "--db-url", db_url],
                   data_dir).code == 0  # fmt: skip
    rows(db_url, "UPDATE reasoning_traces SET task_embedding = NULL WHERE id = %s RETURNING id", T1)
    cfg = load(
        environ={},
        overrides={
            "source": {"chroma_path": str(store)},
            "target": {"db_url": db_url},
            "run": {"data_dir": str(data_dir)},
        },
    )
    session = Session.open(RunContext.create(cfg, "verify"))
    try:
        session.scan()
        assert session.store is not None
        beside = VerifyResult(checked=40)
        beside.traces["checked"] = 21
        result = run_verify(session, session.store, beside=beside)
    finally:
        session.close()
    assert result.checked == 40 and result.traces["checked"] == 21
    assert result.traces["no_embedding"] == 1
