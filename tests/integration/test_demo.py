"""`rbmigrate demo` writes a realistic store in the upstream layout, clean under every rule."""

from __future__ import annotations

import json
from pathlib import Path

import chromadb
import numpy as np

from tests.support.cli import run_cli


def test_demo_store_is_realistic_and_plans_clean(tmp_path: Path, db_url, data_dir):
    path = tmp_path / "chroma_data"
    res = run_cli(["demo", "--chroma-path", str(path), "--records", "120", "--json"], data_dir)
    assert res.code == 0, res.err
    assert res.json()["records"] == 120
    client = chromadb.PersistentClient(path=str(path))
    got = client.get_collection("reasoning_memories").get(
        include=["metadatas", "documents", "embeddings"]
    )
    metas = got["metadatas"]
    assert len({m["trace_id"] for m in metas}) < 120  # traces hold several memories
    assert {m["outcome"] for m in metas} == {"success", "failure", "partial"}
    assert len({m.get("workspace_id") for m in metas}) >= 3
    items = [json.loads(m["memory_data"]) for m in metas]
    assert any(i["error_context"] for i in items) and any(i["parent_memory_id"] for i in items)
    assert all(
        d == f"{i['title']}\n{i['description']}\n{i['content']}"
        for d, i in zip(got["documents"], items, strict=True)
    )
    norms = np.linalg.norm(np.asarray(got["embeddings"]), axis=1)
    assert np.allclose(norms, 1.0, atol=1e-3)  # real sentence embeddings are unit vectors
    plan = run_cli(
        ["--headless", "plan", "--chroma-path", str(path), "--db-url", db_url, "--json"], data_dir
    )
    assert plan.code == 0, plan.err
    report = plan.json()
    assert report["plan"]["new"] == 120 and report["plan"]["invalid"] == 0
    assert report["warnings_by_code"] == {}


def test_demo_refuses_to_overwrite(tmp_path: Path, data_dir):
    path = tmp_path / "precious"
    path.mkdir()
    (path / "keep.txt").write_text("mine")
    res = run_cli(
        ["demo", "--chroma-path", str(path), "--records", "5", "--embeddings", "random"], data_dir
    )
    assert res.code == 2 and "already exists" in res.err
    res = run_cli(
        ["demo", "--chroma-path", str(path), "--records", "5", "--embeddings", "random", "--force"],
        data_dir,
    )
    assert res.code == 2 and "not a demo store" in res.err
    assert (path / "keep.txt").read_text() == "mine"
