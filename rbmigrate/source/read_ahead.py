"""Read a snapshot's pages in a child process, so reading and normalizing use both cores.

Reading a record (SQLite rows, its vector from the HNSW files) costs about as much as
normalizing and hashing it, and in one process both run under one GIL, one after the other.
A child process reads the next page while the caller works on this one, and hands it over
pickled (unpickling costs a quarter of reading). It is the caller's own process tree,
reading the caller's own snapshot, so pickle is safe here.

The child writes frames to its stdout: P (a pickled page), D (done), E (an rbmigrate error
as JSON) or X (any other exception, pickled). It blocks on the pipe when it is a page ahead,
and a write to a closed pipe (the caller stopped or was killed) ends it. Its own session
keeps the terminal's Ctrl+C away from it.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from rbmigrate import errors
from rbmigrate.frames import read_frame, write_frame
from rbmigrate.records.model import SourceRecord


def pages_in_child(
    snapshot: Path,
    scratch: Path,
    tenant: str,
    database: str,
    collection: str,
    *,
    after: int,
    page_size: int,
    with_embeddings: bool = True,
    metadata_keys: tuple[str, ...] | None = None,
) -> Iterator[list[SourceRecord]]:
    """What NativeReader.pages(...) yields with these arguments, read ahead by a child."""
    args = {
        "snapshot": str(snapshot),
        "scratch": str(scratch),
        "tenant": tenant,
        "database": database,
        "collection": collection,
        "after": after,
        "page_size": page_size,
        "with_embeddings": with_embeddings,
        "metadata_keys": metadata_keys,
    }
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rbmigrate.source.read_ahead", json.dumps(args)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            start_new_session=True,
        )
        assert proc.stdout is not None
        try:
            while True:
                try:
                    frame = read_frame(proc.stdout)
                except (EOFError, OSError):
                    frame = None
                if frame is None:
                    raise _died(proc, stderr)
                kind, payload = frame
                if kind == b"P":
                    yield pickle.loads(payload)
                elif kind == b"D":
                    return
                elif kind == b"X":  # what the reader raised, as it would have raised here
                    raise pickle.loads(payload)
                else:
                    raise _error(json.loads(payload))
        finally:
            if proc.poll() is None:  # stopped early: the child only reads, so kill it
                proc.kill()
            proc.stdout.close()
            proc.wait()


def _error(info: dict[str, str | None]) -> errors.RbmigrateError:
    kind = getattr(errors, str(info.get("type")), None)
    if not (isinstance(kind, type) and issubclass(kind, errors.RbmigrateError)):
        kind = errors.SourceError
    return kind(str(info["message"]), title=info.get("title"), hint=info.get("hint"))


def _died(proc: subprocess.Popen[bytes], stderr: IO[bytes]) -> errors.SourceError:
    code = proc.wait()
    stderr.seek(0)
    tail = stderr.read()[-2000:].decode("utf-8", "replace").strip()
    last = tail.splitlines()[-1] if tail else "no message"
    return errors.SourceError(
        f"the snapshot reader process stopped (exit code {code}): {last}",
        hint="run again; if it repeats, run with --reader chromadb and report the message.",
    )


def _describe(exc: BaseException) -> tuple[bytes, bytes]:
    """E{title, message, hint} for rbmigrate's own errors (pickle would drop title and
    hint); any other exception pickled whole, so the caller sees its type (a full disk is an
    sqlite3.OperationalError, and says so to the user)."""
    if isinstance(exc, errors.RbmigrateError):
        return b"E", json.dumps({"type": type(exc).__name__, **exc.as_dict()}).encode()
    try:
        return b"X", pickle.dumps(exc)
    except Exception:
        info = {
            "type": "SourceError",
            "message": f"reading the snapshot failed: {type(exc).__name__}: {exc}",
            "hint": "run with --reader chromadb to read it another way.",
        }
        return b"E", json.dumps(info).encode()


def serve(arg: str) -> int:
    from rbmigrate.source.native import NativeReader

    a = json.loads(arg)
    out = sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but frames may reach the parent's pipe
    try:
        try:
            reader = NativeReader(
                Path(a["snapshot"]), Path(a["scratch"]), a["tenant"], a["database"]
            )
            info = next(c for c in reader.collections() if c.name == a["collection"])
            keys = tuple(a["metadata_keys"]) if a["metadata_keys"] is not None else None
            for page in reader.pages(
                info,
                after=a["after"],
                with_embeddings=a["with_embeddings"],
                page_size=a["page_size"],
                metadata_keys=keys,
            ):
                write_frame(out, b"P", pickle.dumps(page, protocol=pickle.HIGHEST_PROTOCOL))
            write_frame(out, b"D", b"")
        except (BrokenPipeError, KeyboardInterrupt):
            raise
        except Exception as exc:
            write_frame(out, *_describe(exc))
            return 1
    except BrokenPipeError:  # the caller stopped reading; nothing left to flush at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1]))
