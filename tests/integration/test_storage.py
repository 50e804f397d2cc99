"""Storage backends: one conformance suite over Chroma, Supabase (postgres and REST) and dual.

Same inputs, same answers; a round trip through a migration; a live switch-over with the
secondary down for a while. Real Chroma, real PostgreSQL, the real model, the REST path
through the PostgREST-protocol gateway.
"""

from __future__ import annotations

import threading
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from rbmigrate.config import load
from rbmigrate.embeddings import Embedder
from rbmigrate.engine import api
from rbmigrate.errors import ExitCode
from rbmigrate.storage import StorageError, create_storage_backend
from rbmigrate.storage.base import StorageBackendInterface
from rbmigrate.storage.chroma import ChromaStorage
from rbmigrate.storage.dual import DualWriteStorage
from rbmigrate.storage.supabase import SupabaseStorage
from rbmigrate.target.connection import connect
from rbmigrate.target.schema import apply_schema
from tests.support.gateway import SERVICE_ROLE_KEY, TEST_JWT_SECRET, Gateway

WS_A, WS_B = "aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"
TOPICS = [
    ("Fix a KeyError in the config loader", "python_debugging", "success"),
    ("Speed up a slow SQL query with an index", "databases", "success"),
    ("Retry flaky HTTP calls with backoff", "networking", "failure"),
    ("Pin dependency versions to stop CI breaking", "devops", "partial"),
    ("Profile memory growth in a worker pool", "python_debugging", "failure"),
    ("Rotate a leaked API key without downtime", "security", "success"),
    ("Split a large migration into resumable batches", "databases", "success"),
    ("Cache embeddings to avoid recomputing vectors", "ml", "success"),
]
QUERIES = ["database index performance", "python error in configuration", "security keys"]


def traces(offset: int = 0, old: int = 2) -> list[dict[str, Any]]:
    """Eight traces of one or two memories; the first `old` are 40 days old."""
    out = []
    now = datetime(2026, 11, 20, 12, 0, 0)
    for i, (title, domain, outcome) in enumerate(TOPICS):
        n = i + offset
        items = [
            {
                "id": str(uuid.UUID(int=1000 + 10 * n)),
                "title": title,
                "description": f"What worked for {title.lower()}",
                "content": f"Step by step notes number {n} about {title.lower()}.",
                "error_context": {"error": "KeyError: 'x'"} if outcome == "failure" else None,
                "pattern_tags": ["lesson", domain],
                "difficulty_level": ["simple", "moderate", "complex", "expert"][n % 4],
                "domain_category": domain,
            }
        ]
        if n % 2 == 0:
            items.append(
                {
                    "id": str(uuid.UUID(int=1001 + 10 * n)),
                    "title": f"Check the basics before: {title.lower()}",
                    "description": "a second lesson",
                    "content": f"Second memory of trace {n}.",
                    "parent_memory_id": items[0]["id"],
                    "domain_category": domain,
                }
            )
        out.append(
            {
                "trace_id": str(uuid.UUID(int=500 + n)),
                "task": f"Task {n}: {title}",
                "trajectory": [{"step": 1, "action": "think"}],
                "outcome": outcome,
                "memory_items": items,
                "workspace_id": WS_A if n % 3 else WS_B,
                "timestamp": now - timedelta(days=40 if i < old else 1),
            }
        )
    return out


def feed(store: StorageBackendInterface, batch: list[dict[str, Any]]) -> None:
    for t in batch:
        t = dict(t)
        when = t.pop("timestamp")
        store.add_trace(**t, timestamp=when)


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder()


def bootstrapped(pg: Any, name: str) -> str:
    pg.create_database(name)
    url = pg.url(name)
    with connect(url, autocommit=True) as conn:
        apply_schema(conn, "public", 384)
    return url


@pytest.fixture
def backends(pg, tmp_path: Path, embedder: Embedder):
    """name -> backend, each on its own empty store."""
    made: dict[str, StorageBackendInterface] = {}
    dbs = [f"st_{uuid.uuid4().hex[:10]}" for _ in range(3)]
    urls = [bootstrapped(pg, d) for d in dbs]
    gateway = Gateway(urls[1], TEST_JWT_SECRET).start()
    made["chroma"] = ChromaStorage(tmp_path / "chroma", embedder=embedder)
    made["postgres"] = SupabaseStorage(db_url=urls[0], exact_search=True, embedder=embedder)
    made["rest"] = SupabaseStorage(
        supabase_url=gateway.url,
        supabase_key=SERVICE_ROLE_KEY,
        exact_search=True,
        embedder=embedder,
    )
    made["dual"] = DualWriteStorage(
        ChromaStorage(tmp_path / "dual-chroma", embedder=embedder),
        SupabaseStorage(db_url=urls[2], exact_search=True, embedder=embedder),
        outbox=tmp_path / "outbox.sqlite",
    )
    yield made
    for b in made.values():
        b.close()
    gateway.stop()
    for d in dbs:
        pg.drop_database(d)


def answers(store: StorageBackendInterface) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for q in QUERIES:
        for ws in (None, WS_A, WS_B):
            hits = store.query_similar_memories(q, n_results=4, workspace_id=ws)
            out[f"{q}|{ws}"] = [(h.id, round(h.similarity_score or 0, 4)) for h in hits]
        no_err = store.query_similar_memories(q, n_results=3, include_errors=False)
        assert all(not h.error_context for h in no_err)
        out[f"{q}|noerr"] = [h.id for h in no_err]
        dom = store.query_similar_memories(q, n_results=2, domain_filter="databases")
        assert {h.domain_category for h in dom} <= {"databases"}
        out[f"{q}|dom"] = [h.id for h in dom]
    out["stats"] = store.get_statistics()
    out["stats_a"] = store.get_statistics(WS_A)
    return out


def test_same_inputs_same_answers(backends: dict[str, StorageBackendInterface]):
    for store in backends.values():
        feed(store, traces())
    reference = answers(backends["chroma"])
    assert reference["stats"]["total_traces"] == 8 and reference["stats"]["total_memories"] == 12
    assert (
        reference["stats"]["failure_traces"] == 2
        and reference["stats"]["memories_with_errors"] == 2
    )
    assert reference["stats"]["success_rate"] == 62.5  # 5 of 8
    for name, store in backends.items():
        got = answers(store)
        for key, value in reference.items():
            assert got[key] == value, (name, key)
        hit = store.query_similar_memories("slow SQL query index", n_results=1)[0]
        assert hit.title == "Speed up a slow SQL query with an index"
        assert hit.trace_outcome == "success" and hit.trace_timestamp is not None
    # deletions: the old traces, then a workspace; same counts everywhere
    deleted = {n: s.delete_old_traces(30) for n, s in backends.items()}
    assert set(map(str, deleted.values())) == {str(deleted["chroma"])}
    assert deleted["chroma"] == {"deleted_traces": 2, "deleted_memories": 3}
    wiped = {n: s.delete_workspace(WS_B) for n, s in backends.items()}
    assert set(map(str, wiped.values())) == {str(wiped["chroma"])}
    for name, store in backends.items():
        assert store.get_statistics(WS_B)["total_memories"] == 0, name
        assert store.get_statistics() == backends["chroma"].get_statistics(), name


def test_bad_inputs_are_clear(backends: dict[str, StorageBackendInterface]):
    for store in backends.values():
        with pytest.raises(StorageError, match="non-empty title"):
            store.add_trace("t", "task", [], "success", [{"title": "", "content": "c"}])
        with pytest.raises(StorageError, match="query text is empty"):
            store.query_similar_memories("  ")
    with pytest.raises(StorageError, match="outcome"):
        backends["postgres"].add_trace("t", "task", [], "maybe", [{"title": "x", "content": "c"}])


def test_factory_reads_settings_and_names_what_is_missing(monkeypatch, tmp_path: Path, embedder):
    for var in (
        "STORAGE_BACKEND",
        "SUPABASE_DB_URL",
        "SUPABASE_URL",
        "SUPABASE_KEY",
        "CHROMA_PATH",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CHROMA_PATH", str(tmp_path / "env-chroma"))
    store = create_storage_backend(embedder=embedder)
    assert isinstance(store, ChromaStorage)
    monkeypatch.setenv("STORAGE_BACKEND", "supabase")
    monkeypatch.setenv("SUPABASE_URL", "http://127.0.0.1:9")
    with pytest.raises(StorageError, match="missing: SUPABASE_KEY"):
        create_storage_backend()
    with pytest.raises(StorageError, match="unknown storage backend 'mongo'"):
        create_storage_backend("mongo")


def cfg_for(store: Path, url: str, data: Path):
    return load(
        None,
        overrides={
            "source": {"chroma_path": str(store)},
            "target": {"db_url": url},
            "run": {"data_dir": str(data)},
        },
    )


def test_round_trip_through_a_migration(pg, tmp_path: Path, embedder: Embedder):
    chroma = ChromaStorage(tmp_path / "server", embedder=embedder)
    feed(chroma, traces(old=0))
    name = f"rt_{uuid.uuid4().hex[:10]}"
    pg.create_database(name)
    url = pg.url(name)
    try:
        cfg = cfg_for(tmp_path / "server", url, tmp_path / "data")
        first = api.pipeline(cfg)
        assert first.exit_code == ExitCode.OK, first.report.get("error")
        assert first.report["counts"]["inserted"] == 12
        supa = SupabaseStorage(db_url=url, exact_search=True, embedder=embedder)
        for q in QUERIES:
            for ws in (None, WS_A):
                a = [h.id for h in chroma.query_similar_memories(q, 5, workspace_id=ws)]
                b = [h.id for h in supa.query_similar_memories(q, 5, workspace_id=ws)]
                assert a == b, (q, ws)
        assert supa.get_statistics() == chroma.get_statistics()
        # the server, switched to Supabase, writes more: target-only, not conflicts
        feed(supa, traces(offset=100, old=0))
        plan = api.plan(cfg).report["plan"]
        assert plan["changed"] == 0 and plan["unchanged"] == 12 and plan["target_only"] == 12
        again = api.migrate(cfg)
        assert again.exit_code == ExitCode.OK, again.report.get("error")
        counts = again.report["counts"]
        assert counts["unchanged"] == 12 and counts["updated"] == 0 and counts["inserted"] == 0
        assert supa.get_statistics()["total_memories"] == 24
        supa.close()
    finally:
        pg.drop_database(name)


def test_live_switch_over_with_the_secondary_down_for_a_while(pg, tmp_path: Path, embedder):
    """Write through DualWriteStorage while a migration runs; the secondary (REST) fails for
    a stretch; after the final incremental run both stores hold every trace, none twice."""
    server_dir = tmp_path / "server"
    seed = ChromaStorage(server_dir, embedder=embedder)
    feed(seed, traces(old=0))  # what the server held before the switch started
    name = f"sw_{uuid.uuid4().hex[:10]}"
    url = bootstrapped(pg, name)
    gateway = Gateway(url, TEST_JWT_SECRET).start()
    try:
        secondary = SupabaseStorage(
            supabase_url=gateway.url, supabase_key=SERVICE_ROLE_KEY, embedder=embedder
        )
        dual = DualWriteStorage(seed, secondary, outbox=tmp_path / "outbox.sqlite")
        cfg = cfg_for(server_dir, url, tmp_path / "data")
        written: list[str] = []
        stop = threading.Event()

        def writer() -> None:
            n = 200
            while not stop.is_set() or n < 216:
                batch = traces(offset=n, old=0)[:1]
                feed(dual, batch)
                written.append(batch[0]["trace_id"])
                if n == 203:
                    gateway.fail_next(6, status=503)  # the secondary is down for a while
                n += 1

        thread = threading.Thread(target=writer)
        thread.start()
        outcome = api.pipeline(cfg)
        stop.set()
        thread.join(timeout=120)
        assert outcome.exit_code == ExitCode.OK, outcome.report.get("error")
        assert dual.flush() == 0 and dual.last_error is not None  # it did fail, then caught up
        final = api.migrate(cfg)
        assert final.exit_code == ExitCode.OK, final.report.get("error")
        assert final.report["counts"]["updated"] == 0  # dual writes hash like migrated rows
        with connect(url) as conn:
            traces_pg = conn.execute(
                "SELECT count(*), count(DISTINCT id) FROM reasoning_traces"
            ).fetchone()
            mems_pg = conn.execute(
                "SELECT count(*), count(DISTINCT source_id) FROM memory_items"
            ).fetchone()
        chroma_count = seed.collection.count()
        expected_traces = 8 + len(written)
        assert traces_pg == (expected_traces, expected_traces)
        assert mems_pg is not None and mems_pg[0] == mems_pg[1] == chroma_count
        assert seed.get_statistics()["total_traces"] == expected_traces
        secondary.close()
    finally:
        gateway.stop()
        pg.drop_database(name)
