"""Trace task embeddings: the encoder runs ahead of the writes, through a spool on disk."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector

from rbmigrate.embeddings import Embedder
from rbmigrate.encoder_pool import EncoderPool
from rbmigrate.engine import task_embeddings
from rbmigrate.engine.task_embeddings import TaskEmbeddingFill
from tests.support.cli import run_cli
from tests.support.stores import item, rb_metadata, write_store

MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def task_vectors(db_url: str) -> dict[object, np.ndarray | None]:
    with psycopg.connect(db_url) as conn:
        conn.execute("SET search_path TO public, extensions")
        register_vector(conn)
        got = conn.execute("SELECT id, task_embedding FROM reasoning_traces").fetchall()
    return {tid: None if v is None else np.asarray(v.to_numpy()) for tid, v in got}


def test_the_encoder_does_not_wait_for_the_writes(
    tmp_path: Path, db_url: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Encoded chunks wait on disk, not in a bounded queue: with chunks of two tasks, all
    of them are encoded before the updater starts (an in-memory queue held four), and the
    vectors read back from the spool are the ones a whole run stores. Three traces share a
    task, so equal tasks meet across the seams of chunks: each is encoded once."""
    recs = [
        (
            f"00000000-0000-4000-8000-{i:012d}",
            f"T{i}\nD\nC",
            rb_metadata(
                trace_id=f"10000000-0000-4000-8000-{i:012d}",
                task=f"task number {i // 3}: {'fix the build ' * (i // 3 % 4)}",
                item=item(f"00000000-0000-4000-8000-{i:012d}"),
            ),
            None,
        )
        for i in range(24)
    ]
    store = write_store(tmp_path / "s", recs)
    res = run_cli(
        ["--headless", "migrate", "--chroma-path", str(store), "--db-url", db_url, "--json"],
        data_dir,
    )
    assert res.code == 0, res.err
    stored = task_vectors(db_url)
    assert len(stored) == 24 and all(v is not None for v in stored.values())
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE reasoning_traces SET task_embedding = NULL")

    monkeypatch.setattr(task_embeddings, "CHUNK", 2)
    encoder = EncoderPool(MODEL, processes=2)
    index = Path(res.json()["run_dir"]) / "traces.sqlite"
    fill = TaskEmbeddingFill(encoder, 384, db_url, "public", index, threading.Event())
    try:
        fill.start_encoding()
        fill._encoder.join(300)
        assert not fill._encoder.is_alive(), "the encoder waited for the updater"
        assert fill.stats.needed == 24 and fill.stats.encoded == 8
        assert fill.chunks.qsize() == 12 + 1  # every chunk, and the end
        fill.start_updating()
        stats = fill.join()
    finally:
        fill.stop()
        encoder.close()
    assert stats.updated == 24
    again = task_vectors(db_url)
    assert again.keys() == stored.keys()
    for tid, vec in stored.items():
        np.testing.assert_allclose(again[tid], vec, atol=1e-6)


def test_busy_leaves_one_core_to_the_writes() -> None:
    import torch

    embedder = Embedder(MODEL)
    all_threads = torch.get_num_threads()
    try:
        embedder.share_cores(True)
        assert torch.get_num_threads() == max(1, all_threads - 1)
        embedder.share_cores(True)  # not one fewer each time
        assert torch.get_num_threads() == max(1, all_threads - 1)
        embedder.share_cores(False)
        assert torch.get_num_threads() == all_threads
    finally:
        torch.set_num_threads(all_threads)
