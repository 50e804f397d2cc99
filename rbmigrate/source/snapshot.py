"""Copy a Chroma directory into the run directory without ever writing to it.

chromadb migrates and trims a store whenever it opens it, even to read, so rbmigrate opens
only a copy: first an SQLite online backup of chroma.sqlite3 through a read-only connection
(a consistent copy even while a server writes), then the segment folders. Chroma commits a
vector segment's position to SQLite only after its files are saved, so backup-first loses
nothing: the folders are at least as new as the database says.

The copy's digest (SHA-256 over every file, hashed beside the copy) tells a later run that
the store has not changed since (engine.unchanged): two backups of an unchanged database are
byte for byte the same.
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from rbmigrate.errors import SourceError
from rbmigrate.events import RunControl
from rbmigrate.source.formats import ChromaFormat, check_store_dir, integrity_problem, read_format

SQLITE_SIDE_FILES = ("chroma.sqlite3-journal", "chroma.sqlite3-wal", "chroma.sqlite3-shm")


@dataclass
class Snapshot:
    path: Path
    source: Path
    format: ChromaFormat
    bytes: int
    seconds: float
    digest: str = ""


def store_size(path: Path) -> int:
    total = 0
    for item in path.rglob("*"):
        try:
            if item.is_file():
                total += item.stat().st_size
        except OSError:
            continue
    return total


def open_readonly(db: Path) -> sqlite3.Connection:
    """A connection that cannot write to the user's file, whatever SQLite would like to do."""
    conn = sqlite3.connect(
        f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=30, check_same_thread=False
    )
    conn.text_factory = lambda b: b.decode("utf-8", "surrogateescape")
    return conn


def check_space(source: Path, dest_parent: Path) -> int:
    size = store_size(source)
    dest_parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(dest_parent).free
    if free < size * 1.1:
        raise SourceError(
            f"not enough disk space for the snapshot: the store is {size / 1e6:.1f} MB and "
            f"{dest_parent} has {free / 1e6:.1f} MB free (needs store size × 1.1).",
            title="Not enough disk space",
            hint="free some space or set [run] data_dir to a larger disk.",
        )
    return size


def _quick_check(db: Path) -> str | None:
    snap = sqlite3.connect(db)
    try:
        return integrity_problem(snap)
    finally:
        snap.close()


def file_sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def combined_digest(root: Path, parts: dict[str, Future[str]]) -> str:
    """One digest for a folder: each file's relative path, size and SHA-256, in path order."""
    whole = hashlib.sha256()
    for rel in sorted(parts):
        size = (root / rel).stat().st_size
        whole.update(f"{rel}\0{size}\0{parts[rel].result()}\n".encode())
    return whole.hexdigest()


def take_snapshot(source: Path, dest: Path, control: RunControl | None = None) -> Snapshot:
    """Snapshot `source` into `dest` (which must not exist). Removes `dest` on failure."""
    started = time.monotonic()
    db = check_store_dir(source)
    size = check_space(source, dest.parent)
    dest.mkdir(parents=True)
    complete = False
    try:
        src = open_readonly(db)
        try:
            fmt = read_format(src, str(db))
            out = sqlite3.connect(dest / "chroma.sqlite3")
            try:
                src.backup(out)
            finally:
                out.close()
        except sqlite3.OperationalError as exc:
            raise SourceError(
                f"cannot read {db} consistently: {exc}.",
                title="Store busy or unfinished",
                hint="a process may be writing, or a write was interrupted: stop the ReasoningBank "
                "server (or read through a Chroma server with --chroma-url) and retry.",
            ) from None
        except sqlite3.DatabaseError as exc:
            raise SourceError(
                f"{db} is damaged: {exc}.",
                title="Corrupted store",
                hint="restore the store from a backup; nothing was written anywhere.",
            ) from None
        finally:
            src.close()
        # the copy's quick_check and hashing run while the segment folders are copied (in C,
        # without the GIL)
        with ThreadPoolExecutor(2, thread_name_prefix="rbmigrate-check") as pool:
            checked = pool.submit(_quick_check, dest / "chroma.sqlite3")
            parts = {"chroma.sqlite3": pool.submit(file_sha256, dest / "chroma.sqlite3")}
            for item in sorted(source.iterdir()):
                if control is not None:
                    control.checkpoint()
                if item.name == "chroma.sqlite3" or item.name in SQLITE_SIDE_FILES:
                    continue
                if item.is_dir():
                    shutil.copytree(item, dest / item.name)
                elif item.is_file():
                    shutil.copy2(item, dest / item.name)
            for copied in sorted(dest.rglob("*")):
                rel = copied.relative_to(dest).as_posix()
                if rel not in parts and copied.is_file():
                    parts[rel] = pool.submit(file_sha256, copied)
            problem = checked.result()
            digest = combined_digest(dest, parts)
        if problem:
            raise SourceError(
                f"{db} is damaged: SQLite integrity check says {problem!r}.",
                title="Corrupted store",
                hint="restore the store from a backup; nothing was written anywhere.",
            )
        complete = True
    except OSError as exc:
        raise SourceError(f"snapshot of {source} failed: {exc}.", title="Snapshot failed") from None
    finally:
        if not complete:
            shutil.rmtree(dest, ignore_errors=True)
    return Snapshot(dest, source, fmt, size, time.monotonic() - started, digest)
