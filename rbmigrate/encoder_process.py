"""The embedding model in a child process, for migrations.

A migration encodes tens of thousands of trace tasks while its main thread normalizes,
hashes and COPYs. In one process the two fight over the GIL: every torch operation gives
the GIL up and must wait for it back, and with a busy Python thread beside it encoding ran
seven times slower than alone. A child process has its own interpreter, so the two only
share the cores.

The child talks over its stdin/stdout with framed messages and exits when its stdin closes,
which also happens when the parent is killed: a SIGKILLed migration leaves no encoder behind
for longer than one chunk. It runs in its own session so the terminal's Ctrl+C goes to the
migration alone, which then stops the child itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
from typing import IO

import numpy as np
import numpy.typing as npt

from rbmigrate.embeddings import EmbeddingError, check_dimension
from rbmigrate.frames import read_frame, write_frame


class EncoderProcess:
    """Same encode()/dimension/check_dimension as Embedder, computed in a child process."""

    def __init__(
        self, name: str, device: str = "cpu", batch_size: int = 64, *, threads: int = 0
    ) -> None:
        self.name = name
        self.device = device
        self.batch_size = batch_size
        self.threads = threads  # torch threads in the child; 0: one per core
        self._lock = threading.Lock()  # one request and its answer at a time
        self._write_lock = threading.Lock()  # one frame at a time on the child's stdin
        self._busy = False  # other work needs a core (share_cores)
        self._dimension: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._failure: EmbeddingError | None = None  # the child could not load the model

    # --- talking to the child ----------------------------------------------------------------
    def _start(self) -> subprocess.Popen[bytes]:
        """Spawn on first use: a run that encodes nothing never pays for loading torch."""
        if self._proc is None:
            self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the child
            argv = [sys.executable, "-m", "rbmigrate.encoder_worker", self.name, self.device]
            self._proc = subprocess.Popen(
                [*argv, str(self.batch_size), str(self.threads)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                start_new_session=True,
                env=self._environment(),
            )
            with self._write_lock:
                if self._busy:
                    self._send_cores()
        return self._proc

    def _environment(self) -> dict[str, str]:
        """A fixed thread count holds for every thread pool in the child, the tokenizer's too:
        a pool child that starts a second thread only makes its neighbours wait."""
        env = dict(os.environ)
        if self.threads:
            env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(self.threads)
            if self.threads == 1:
                env["TOKENIZERS_PARALLELISM"] = "false"
        return env

    def _receive(self) -> tuple[bytes, bytes]:
        assert self._proc is not None and self._proc.stdout is not None
        try:
            frame = read_frame(self._proc.stdout)
        except (EOFError, OSError):
            frame = None
        if frame is None:
            raise self._died()
        if frame[0] == b"E":
            info = json.loads(frame[1])
            raise EmbeddingError(info["message"], title=info.get("title"), hint=info.get("hint"))
        return frame

    def _died(self) -> EmbeddingError:
        assert self._proc is not None and self._stderr is not None
        code = self._proc.poll()
        self._stderr.seek(0)
        tail = self._stderr.read()[-2000:].decode("utf-8", "replace").strip()
        last = tail.splitlines()[-1] if tail else "no message"
        return EmbeddingError(
            f"the embedding process stopped (exit code {code}): {last}",
            hint="check that the model loads with `rbmigrate doctor`; free memory if the system ran out.",
        )

    def _ready(self) -> int:
        if self._failure is not None:
            raise self._failure
        self._start()
        if self._dimension is None:
            try:
                kind, payload = self._receive()
            except EmbeddingError as exc:
                self._failure = exc
                raise
            if kind != b"R":
                raise EmbeddingError(f"the embedding process answered {kind!r} before it was ready")
            self._dimension = int(json.loads(payload)["dimension"])
        return self._dimension

    def start(self) -> None:
        """Spawn now without waiting: the model loads while the caller does other work."""
        with self._lock:
            if self._failure is None:
                self._start()

    # --- Embedder's interface ------------------------------------------------------------------
    @property
    def dimension(self) -> int:
        with self._lock:
            return self._ready()

    def encode(self, texts: list[str]) -> npt.NDArray[np.float32]:
        with self._lock:
            dim = self._ready()
            if not texts:
                return np.zeros((0, dim), dtype=np.float32)
            assert self._proc is not None and self._proc.stdin is not None
            try:
                # ensure_ascii keeps lone surrogates as escapes, so any str survives the trip
                payload = json.dumps(texts).encode("ascii")
                with self._write_lock:
                    write_frame(self._proc.stdin, b"T", payload)
            except OSError:
                raise self._died() from None
            kind, payload = self._receive()
            if kind != b"V" or len(payload) != len(texts) * dim * 4:
                raise EmbeddingError(
                    f"the embedding process answered {kind!r} with {len(payload)} bytes"
                )
            vectors = np.frombuffer(payload, dtype=np.float32).reshape(len(texts), dim)
            return vectors.copy()

    def check_dimension(self, expected: int, what: str) -> None:
        check_dimension(self, expected, what)

    def share_cores(self, busy: bool) -> None:
        """Embedder.share_cores says why. Does not wait for an encode() under way: the child
        reads its frames in order, so this takes effect from the next encode() call."""
        with self._write_lock:
            self._busy = busy
            if self._proc is not None:  # else _start() sends it
                self._send_cores()

    def _send_cores(self) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        with contextlib.suppress(OSError):  # the child is gone: encode() says why
            write_frame(self._proc.stdin, b"C", b"1" if self._busy else b"0")

    def alive(self) -> bool:
        """Not started yet counts as alive: it will start when asked."""
        return self._proc is None or self._proc.poll() is None

    def close(self) -> None:
        """Close the child's stdin (it exits by itself) and reap it."""
        if self._proc is None:
            return
        if self._proc.stdin is not None and not self._proc.stdin.closed:
            with contextlib.suppress(OSError):
                self._proc.stdin.close()
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        for stream in (self._proc.stdout, self._stderr):
            if stream is not None:
                stream.close()
