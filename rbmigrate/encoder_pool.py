"""Model processes side by side, one torch thread each: every core encodes and none waits.

torch with a thread per core makes its threads meet at a barrier after every operator, so
a thread that the scheduler puts aside stalls the others. Processes of one thread never wait
for each other: on 2 cores, 12,512 trace tasks took 55.0 s in one process of two threads and
46.8 s in two processes of one thread each (mean of three runs, interleaved). They also let
other work have a core without resizing a thread pool: beside the writes one process fewer
takes texts (share_cores), and it takes them up again once they are done.

A caller's texts are cut into pieces of one model batch that the processes take in turn.
submit() does that without waiting, so a caller can queue its next texts before the last
piece of the previous ones is done, and no process idles at the seam.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
from collections import deque
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from rbmigrate.config import Config
from rbmigrate.embeddings import EmbeddingError, check_dimension
from rbmigrate.encoder_process import EncoderProcess

MAX_PROCESSES = 4  # each holds torch and the model; more cores give each process more threads

Vectors = npt.NDArray[np.float32]


def usable_cores() -> int:
    """The cores this process may run on (a container or taskset may allow fewer)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def layout(device: str, processes: int, cores: int) -> tuple[int, int]:
    """(processes, torch threads each). One process with torch's default on an accelerator,
    where the device does the work."""
    if device != "cpu":
        return 1, 0
    count = processes or min(cores, MAX_PROCESSES)
    return count, max(1, cores // count)


@dataclass
class _Job:
    texts: list[str]
    piece: int
    future: Future[Vectors] = field(default_factory=Future)
    parts: dict[int, Vectors] = field(default_factory=dict)

    @property
    def pieces(self) -> int:
        return -(-len(self.texts) // self.piece)


class EncoderPool:
    """Embedder's interface (encode, dimension, check_dimension, share_cores) over
    EncoderProcess children, plus submit()."""

    def __init__(
        self, name: str, device: str = "cpu", batch_size: int = 64, processes: int = 0
    ) -> None:
        self.name = name
        self.device = device
        self.batch_size = batch_size
        count, threads = layout(device, processes, usable_cores())
        self.children = [
            EncoderProcess(name, device, batch_size, threads=threads) for _ in range(count)
        ]
        self._cond = threading.Condition()
        self._queue: deque[tuple[_Job, int]] = deque()  # (job, piece number)
        self._active = count  # children that take pieces (share_cores)
        self.served = [0] * count  # pieces each child encoded
        self._threads: list[threading.Thread] = []
        self._closed = False

    # --- the children's threads -------------------------------------------------------------
    def start(self) -> None:
        """Spawn every child now without waiting: the model loads while the caller works."""
        with self._cond:
            if self._threads or self._closed:
                return
            for number, child in enumerate(self.children):
                child.start()
                thread = threading.Thread(
                    target=self._serve,
                    args=(number,),
                    name=f"rbmigrate-encoder-{number}",
                    daemon=True,
                )
                thread.start()
                self._threads.append(thread)

    def _next(self, number: int) -> tuple[_Job, int] | None:
        with self._cond:
            while not self._closed and (number >= self._active or not self._queue):
                self._cond.wait()
            if self._closed:
                return None
            return self._queue.popleft()

    def _serve(self, number: int) -> None:
        child = self.children[number]
        while (taken := self._next(number)) is not None:
            job, piece = taken
            if job.future.done():  # cancelled, or another piece failed
                continue
            at = piece * job.piece
            try:
                vectors = child.encode(job.texts[at : at + job.piece])
            except BaseException as exc:
                self._fail(job, exc)
                continue
            with self._cond:
                self.served[number] += 1
                job.parts[piece] = vectors
                finished = len(job.parts) == job.pieces and not job.future.done()
            if finished:
                whole = np.concatenate([job.parts[i] for i in range(job.pieces)])
                job.parts.clear()
                with contextlib.suppress(InvalidStateError):  # the caller cancelled it
                    job.future.set_result(whole)

    def _fail(self, job: _Job, exc: BaseException) -> None:
        with self._cond:
            self._queue = deque(item for item in self._queue if item[0] is not job)
        with contextlib.suppress(InvalidStateError):
            job.future.set_exception(exc)

    # --- Embedder's interface ----------------------------------------------------------------
    def submit(self, texts: list[str]) -> Future[Vectors]:
        """Queue `texts`; the future holds their vectors in order. cancel() on it drops the
        pieces no child has taken yet."""
        if not texts:
            done: Future[Vectors] = Future()
            done.set_result(np.zeros((0, self.dimension), dtype=np.float32))
            return done
        self.start()
        job = _Job(texts, max(1, self.batch_size))
        with self._cond:
            if self._closed:
                raise EmbeddingError("the embedding processes were closed")
            self._queue.extend((job, piece) for piece in range(job.pieces))
            self._cond.notify_all()
        return job.future

    def encode(self, texts: list[str]) -> Vectors:
        return self.submit(texts).result()

    @property
    def dimension(self) -> int:
        return self.children[0].dimension

    def check_dimension(self, expected: int, what: str) -> None:
        check_dimension(self, expected, what)

    def share_cores(self, busy: bool) -> None:
        """Leave a core to the work beside the encoder (busy) or take them all back: one
        child fewer takes pieces. A single child with a thread per core leaves one of its
        threads instead (EncoderProcess.share_cores)."""
        if len(self.children) == 1:
            self.children[0].share_cores(busy)
            return
        with self._cond:
            self._active = len(self.children) - 1 if busy else len(self.children)
            self._cond.notify_all()

    def alive(self) -> bool:
        return all(child.alive() for child in self.children)

    def close(self) -> None:
        """Stop the children (each exits when its stdin closes); queued work fails."""
        with self._cond:
            self._closed = True
            left = [job for job, _piece in self._queue]
            self._queue.clear()
            self._cond.notify_all()
        for job in left:
            with contextlib.suppress(InvalidStateError):
                job.future.set_exception(EmbeddingError("the embedding processes were closed"))
        for child in self.children:
            child.close()
        for thread in self._threads:
            thread.join(10)


_shared: dict[tuple[str, str, int, int], EncoderPool] = {}
_shared_lock = threading.Lock()


def shared_encoder_pool(cfg: Config) -> EncoderPool:
    """One pool per model per process: the wizard and the tests run many migrations, and
    each start costs seconds of model loading."""
    e = cfg.embedding
    key = (e.model, e.device, e.encode_batch_size, e.processes)
    with _shared_lock:
        got = _shared.get(key)
        if got is None or not got.alive():
            if got is not None:
                got.close()
            got = _shared[key] = EncoderPool(*key)
        return got


@atexit.register
def _close_shared() -> None:
    for pool in _shared.values():
        pool.close()
