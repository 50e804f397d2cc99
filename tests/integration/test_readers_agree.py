"""The native snapshot reader returns what chromadb's own get() returns, for every format."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

import chromadb
import numpy as np
import pytest
from chromadb.config import Settings

from rbmigrate.source.chroma_api import ChromaApiReader
from rbmigrate.source.native import NativeReader


def read_all(reader, info, page_size=700):
    return {
        r.id: r
        for page in reader.pages(info, after=0, with_embeddings=True, page_size=page_size)
        for r in page
    }


def compare(store: Path, tmp: Path, *, cosine_log_tolerance: bool = True) -> dict[str, int]:
    """Read copies of `store` with both readers; return records per collection."""
    shutil.copytree(store, tmp / "a")
    shutil.copytree(store, tmp / "b")
    native = NativeReader(tmp / "a", tmp / "scratch")
    api = ChromaApiReader.persistent(tmp / "b")
    counts: dict[str, int] = {}
    try:
        api_cols = {c.name: c for c in api.collections()}
        for info in native.collections():
            other = api_cols[info.name]
            assert (info.count, info.dimension, info.space) == (
                other.count,
                other.dimension,
                other.space,
            )
            mine, theirs = read_all(native, info), read_all(api, other)
            assert set(mine) == set(theirs)
            for rid, r in mine.items():
                t = theirs[rid]
                assert r.document == t.document, rid
                assert r.metadata == t.metadata, rid
                assert r.embedding is not None and r.embedding.dtype == np.float32
                if info.space == "cosine" and cosine_log_tolerance:
                    # records still in the write log come back raw from us, renormalized from chromadb
                    assert np.allclose(r.embedding, t.embedding, rtol=1e-6, atol=1e-7), rid
                else:
                    assert np.array_equal(r.embedding, t.embedding), rid
            counts[info.name] = len(mine)
    finally:
        native.close()
        api.close()
    return counts


@pytest.mark.parametrize(
    "archive,expected",
    [
        ("chroma-0.6.3-small.tgz", 10),
        ("chroma-1.0.20-small.tgz", 10),
        ("upstream-empty-store.tgz", 0),
    ],
)
def test_fixture_formats(shared_fixtures: Path, tmp_path: Path, archive: str, expected: int):
    with tarfile.open(shared_fixtures / archive) as tar:
        tar.extractall(tmp_path / "x", filter="data")
    store = next(p.parent for p in (tmp_path / "x").rglob("chroma.sqlite3"))
    assert compare(store, tmp_path) == {"reasoning_memories": expected}


def _churned_store(path: Path) -> None:
    """Three spaces, vectors partly persisted and partly in the write log, with deletes,
    updates, upserts, re-adds, duplicate adds and every metadata type chromadb 1.5 allows."""
    client = chromadb.PersistentClient(
        path=str(path), settings=Settings(anonymized_telemetry=False)
    )
    rng = np.random.default_rng(5)
    for space in ("cosine", "ip", "l2"):
        col = client.get_or_create_collection(
            f"c_{space}",
            embedding_function=None,
            metadata={"hnsw:space": space, "hnsw:sync_threshold": 300, "hnsw:batch_size": 50},
        )
        n = 900
        md = [
            {
                "s": f"v{i}",
                "i": i,
                "f": i / 3,
                "b": i % 2 == 0,
                "arr": [1, 2, 3] if i % 5 == 0 else "x",
                "sa": ["a", "b"] if i % 4 == 0 else 0,
            }
            for i in range(n)
        ]
        col.add(
            ids=[f"id{i}" for i in range(n)],
            embeddings=rng.random((n, 8), dtype=np.float32) * 3,
            metadatas=md,
            documents=[None if i % 7 == 0 else f"doc {i}" for i in range(n)],
        )
        col.delete(ids=[f"id{i}" for i in range(0, 100, 3)])
        col.update(
            ids=[f"id{i}" for i in range(100, 200)],
            embeddings=rng.random((100, 8), dtype=np.float32),
            metadatas=[{"upd": True}] * 100,
        )
        col.update(
            ids=[f"id{i}" for i in range(200, 220)], metadatas=[{"s": None, "new": "x"}] * 20
        )
        col.upsert(
            ids=[f"id{i}" for i in range(850, 1000)],
            embeddings=rng.random((150, 8), dtype=np.float32),
            metadatas=[{"u": 1}] * 150,
        )
        col.add(
            ids=[f"id{i}" for i in range(0, 30, 3)],
            embeddings=rng.random((10, 8), dtype=np.float32),
        )
        col.add(ids=["id500"], embeddings=rng.random((1, 8), dtype=np.float32))  # ignored: exists
        col.delete(ids=["id960"])
    client.clear_system_cache()


def test_churned_store_all_spaces(tmp_path: Path):
    _churned_store(tmp_path / "store")
    counts = compare(tmp_path / "store", tmp_path)
    assert counts == {"c_cosine": 975, "c_ip": 975, "c_l2": 975}
