"""Trace task embeddings: encoded in large chunks while everything else goes on.

Encoding the trace tasks is the longest part of a migration (all-MiniLM-L6-v2 on the CPU).
So it does not sit on the write path: traces are written without their task embedding, an
encoder thread feeds the tasks that need one (deduplicated by text, shortest first so a
chunk pads little) to the model's own process from the start of the run, and once the rows
exist an updater thread fills `task_embedding` chunk by chunk. Encoded chunks wait in a
spool file in the run directory, not in memory: the encoder never waits for the writes, and
memory stays one chunk whatever the store's size. A trace whose task embedding is still NULL
is simply picked up again by the next run, so a kill at any moment loses nothing.
"""

from __future__ import annotations

import os
import pickle
import queue
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import numpy as np
import psycopg
from psycopg import sql

from rbmigrate.embeddings import TextEncoder
from rbmigrate.encoder_pool import EncoderPool
from rbmigrate.engine.beside import lower_priority
from rbmigrate.engine.traceindex import TraceIndex
from rbmigrate.errors import TargetConnectionError
from rbmigrate.target.connection import connect

CHUNK = 2048
RETRY_DELAYS = (1, 2, 4, 8, 15, 30, 30, 30)


@dataclass
class FillStats:
    needed: int = 0
    encoded: int = 0
    updated: int = 0
    errors: list[BaseException] = field(default_factory=list)


def traces_needing_embeddings(index: TraceIndex, conn: Any, schema: str) -> Iterator[list[UUID]]:
    """Traces of this source whose target row is absent, has no task embedding, or another
    task, a page at a time. The same answer before, during or after the writes: a trace the
    run writes is absent or changed before, and without an embedding (or with its task's)
    after."""
    table = sql.SQL("{}.reasoning_traces").format(sql.Identifier(schema))
    for page in index.iter_summaries():
        rows = conn.execute(
            sql.SQL(
                "SELECT id, task, task_embedding IS NOT NULL FROM {} WHERE id = ANY(%s)"
            ).format(table),
            ([t[0] for t in page],),
        ).fetchall()
        conn.commit()
        have = {r[0]: (r[1], r[2]) for r in rows}
        yield [
            tid
            for tid, _hash, _memories, task in page
            if (got := have.get(tid)) is None or not got[1] or got[0] != task
        ]


def submit(encoder: TextEncoder, texts: list[str]) -> Future[Any]:
    """The pool queues texts without waiting; any other encoder answers at once."""
    if isinstance(encoder, EncoderPool):
        return encoder.submit(texts)
    done: Future[Any] = Future()
    try:
        done.set_result(encoder.encode(texts))
    except Exception as exc:
        done.set_exception(exc)
    return done


def shortest_first(task: str) -> tuple[int, str]:
    """Encoding order (TraceIndex.to_embed sorts so in SQL): equal tasks side by side, texts
    of a length together (little padding per batch)."""
    return len(task), task


class TaskEmbeddingFill:
    def __init__(
        self,
        embedder: TextEncoder,
        dimension: int,
        dsn: str,
        schema: str,
        index_path: Path,
        cancel: threading.Event,
        *,
        local_server: bool = False,
    ) -> None:
        self.embedder = embedder
        self.local_server = local_server  # the database runs on this machine: nice its backend
        self.dimension = dimension
        self.dsn = dsn
        self.schema = schema
        self.index_path = index_path
        self.counted = threading.Event()  # `needed` is known
        self.cancel = cancel
        self.stats = FillStats()
        # (offset, size) of each encoded chunk in the spool; None ends
        self.chunks: queue.Queue[tuple[int, int] | None] = queue.Queue()
        self._spool = tempfile.TemporaryFile(prefix="task-vectors-", dir=index_path.parent)  # noqa: SIM115
        self._spooled = 0
        self._encoder = threading.Thread(target=self._encode, name="rbmigrate-encoder", daemon=True)
        self._updater = threading.Thread(target=self._update, name="rbmigrate-updater", daemon=True)
        self._stop = threading.Event()

    # --- encoder ---------------------------------------------------------------------------
    def start_encoding(self) -> None:
        """Find the traces that need an embedding, then encode them: both in the encoder
        thread, so finding them (a lookup per 5,000 traces) runs beside the writes."""
        self._encoder.start()

    def wait_counted(self, checkpoint: Callable[[], None]) -> int:
        while not self.counted.wait(0.2):
            checkpoint()
        self.raise_if_failed()
        return self.stats.needed

    def _find(self, index: TraceIndex) -> None:
        """List the traces to embed in the trace index (not in memory: 400,000 records
        have 200,000 tasks)."""
        for delay in (0, *RETRY_DELAYS):
            if delay and self.cancel.wait(delay):
                raise InterruptedError("stopped")
            try:
                with connect(self.dsn, schema=self.schema) as conn:
                    needed = traces_needing_embeddings(index, conn, self.schema)
                    self.stats.needed = index.mark_to_embed(needed)
                return
            except (psycopg.OperationalError, psycopg.InterfaceError):
                continue
        # not a psycopg error: the write loop must not reconnect and retry it
        raise TargetConnectionError(
            "the database stayed unreachable for two minutes while rbmigrate listed the"
            " traces whose task needs an embedding.",
            hint="check the database, then run the same command again: it resumes.",
        )

    def raise_if_failed(self) -> None:
        """Let the write loop stop early when the model cannot be used at all."""
        if self.stats.errors:
            raise self.stats.errors[0]

    def _encode(self) -> None:
        index = TraceIndex(self.index_path)  # a connection of this thread's own
        try:
            try:
                self._find(index)
            finally:
                self.counted.set()
            if not self.stats.needed:
                return
            self.embedder.check_dimension(self.dimension, "the target")
            for item in self._encoded(index.to_embed(CHUNK)):
                self.chunks.put(self._to_spool(item))
        except BaseException as exc:
            self.stats.errors.append(exc)
        finally:
            index.close()
            self.chunks.put(None)

    def _encoded(
        self, chunks: Iterator[list[tuple[UUID, str]]]
    ) -> Iterator[list[tuple[UUID, str, Any]]]:
        """Each chunk with its vectors, in order. The next chunk is queued before the last
        piece of one is done, so no model process idles at the seam. Equal tasks are
        adjacent (shortest_first): a task is encoded once even across a seam, and memory
        stays two chunks."""
        waiting: deque[tuple[list[tuple[UUID, str]], list[str], Future[Any]]] = deque()
        queued: set[str] = set()  # the tasks of the chunk queued last
        known: dict[str, Any] = {}  # the vectors of the chunk handed out last

        def hand_out(keep: int) -> Iterator[list[tuple[UUID, str, Any]]]:
            nonlocal known
            while len(waiting) > keep and not self._stopped():
                chunk, texts, future = waiting.popleft()
                known = self._with_vectors(chunk, texts, self._wait(future), known)
                yield [(tid, task, known[task]) for tid, task in chunk]

        try:
            for chunk in chunks:
                if self._stopped():
                    return
                tasks = dict.fromkeys(task for _tid, task in chunk)
                texts = [t for t in tasks if t not in queued]
                queued = set(tasks)
                waiting.append((chunk, texts, submit(self.embedder, texts)))
                self.stats.encoded += len(texts)
                yield from hand_out(keep=1)
            yield from hand_out(keep=0)
        finally:
            for _chunk, _texts, future in waiting:
                future.cancel()

    def _stopped(self) -> bool:
        return self._stop.is_set() or self.cancel.is_set()

    def _wait(self, future: Future[Any]) -> Any:
        """A chunk's vectors; a stop cancels what no model process has taken yet."""
        while True:
            try:
                return future.result(timeout=0.2)
            except TimeoutError:
                if self._stopped():
                    future.cancel()
                    raise InterruptedError("stopped") from None

    @staticmethod
    def _with_vectors(
        chunk: list[tuple[UUID, str]], texts: list[str], vectors: Any, known: dict[str, Any]
    ) -> dict[str, Any]:
        """Every task of `chunk` with its vector: fresh, or from the chunk before."""
        fresh = dict(zip(texts, vectors, strict=True))
        return {task: fresh[task] if task in fresh else known[task] for _tid, task in chunk}

    def _to_spool(self, item: list[tuple[UUID, str, Any]]) -> tuple[int, int]:
        """Our own bytes read back by our own process: pickle is safe here."""
        blob = pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
        at = self._spooled
        done = 0
        while done < len(blob):  # pwrite may write less than asked
            done += os.pwrite(self._spool.fileno(), blob[done:], at + done)
        self._spooled += len(blob)
        return at, len(blob)

    def _from_spool(self, at: int, size: int) -> list[tuple[UUID, str, Any]]:
        blob = os.pread(self._spool.fileno(), size, at)
        if len(blob) != size:
            raise OSError(f"the task-vector spool ended early ({len(blob)} of {size} bytes)")
        item: list[tuple[UUID, str, Any]] = pickle.loads(blob)
        return item

    # --- updater ---------------------------------------------------------------------------
    def start_updating(self) -> None:
        """Call once the traces exist (after the write pass)."""
        self._updater.start()

    def _update(self) -> None:
        """Niced, with its backend if that is local: the updates keep up with the encoder
        in the gaps it leaves on the cores instead of taking turns with it."""
        lower_priority(threading.get_native_id())
        conn = None
        try:
            while True:
                try:
                    item = self.chunks.get(timeout=0.2)
                except queue.Empty:
                    if self._stop.is_set():
                        return
                    continue
                if item is None:
                    return
                conn = self._apply(conn, self._from_spool(*item))
        except BaseException as exc:
            self.stats.errors.append(exc)
        finally:
            if conn is not None:
                conn.close()

    def _apply(self, conn: Any, item: list[tuple[UUID, str, np.ndarray | None]]) -> Any:
        rows = [(tid, task, vec) for tid, task, vec in item if vec is not None]
        table = sql.SQL("{}.reasoning_traces").format(sql.Identifier(self.schema))
        for delay in (0, *RETRY_DELAYS):
            if delay and self.cancel.wait(delay):
                raise InterruptedError("stopped")
            try:
                if conn is None:
                    conn = connect(self.dsn, schema=self.schema)
                    if self.local_server:
                        row = conn.execute("SELECT pg_backend_pid()").fetchone()
                        conn.commit()
                        if row:
                            lower_priority(int(row[0]))
                with conn.transaction():
                    conn.execute(
                        "CREATE TEMP TABLE IF NOT EXISTS rbm_task_vectors (id uuid, task text, v vector)"
                        " ON COMMIT DELETE ROWS"
                    )
                    with conn.cursor().copy(
                        "COPY rbm_task_vectors FROM STDIN WITH (FORMAT BINARY)"
                    ) as copy:
                        copy.set_types(["uuid", "text", "vector"])
                        for row in rows:
                            copy.write_row(row)
                    cur = conn.execute(
                        sql.SQL(
                            "UPDATE {} t SET task_embedding = s.v FROM rbm_task_vectors s"
                            " WHERE t.id = s.id AND t.task = s.task"
                        ).format(table)
                    )
                    self.stats.updated += cur.rowcount
                return conn
            except (psycopg.OperationalError, psycopg.InterfaceError):
                if conn is not None:
                    conn.close()
                conn = None
        raise psycopg.OperationalError(
            "the database stayed unreachable while writing task embeddings"
        )

    # --- end ---------------------------------------------------------------------------------
    def running(self) -> bool:
        return self._encoder.is_alive() or self._updater.is_alive()

    def join(self) -> FillStats:
        if self._encoder.is_alive() or self._encoder.ident is not None:
            self._encoder.join()
        if self._updater.ident is not None:
            self._updater.join()
        self._spool.close()
        if self.stats.errors:
            raise self.stats.errors[0]
        return self.stats

    def stop(self) -> None:
        self._stop.set()
        for thread in (self._encoder, self._updater):
            if thread.ident is not None:
                thread.join(30)
        self._spool.close()
