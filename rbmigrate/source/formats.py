"""Which chromadb wrote a store, read from the `migrations` table of chroma.sqlite3.

Each chromadb release applies numbered schema migrations per area (sysdb, metadb,
embeddings_queue); the highest applied numbers identify the on-disk format.
"""

from __future__ import annotations

import sqlite3
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rbmigrate.errors import SourceError

# (sysdb, metadb, embeddings_queue) -> the chromadb versions that write exactly this format
KNOWN_FORMATS: dict[tuple[int, int, int], str] = {
    (9, 4, 2): "chromadb 0.5.x–0.6.x",
    (9, 5, 2): "chromadb 1.0.x",
    (10, 6, 2): "chromadb 1.1–1.5 (current)",
}
# what the installed chromadb 1.5 migrates to; a store beyond this was written by a newer one
CURRENT = (10, 6, 2)
SQLITE_MAGIC = b"SQLite format 3\x00"


@dataclass
class ChromaFormat:
    migrations: dict[str, int] = field(default_factory=dict)
    label: str = "unknown"
    native: bool = False
    newer_than_installed: bool = False
    needs_migration: bool = False  # chromadb 1.5 would rewrite it on open

    @property
    def signature(self) -> tuple[int, int, int]:
        m = self.migrations
        return (m.get("sysdb", 0), m.get("metadb", 0), m.get("embeddings_queue", 0))

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["signature"] = "sysdb {} / metadb {} / queue {}".format(*self.signature)
        return d


def check_store_dir(path: Path) -> Path:
    """The chroma.sqlite3 of a store directory, or a SourceError saying what is wrong."""
    if not path.exists():
        raise SourceError(
            f"{path} does not exist.",
            title="Not a Chroma store",
            hint="pass the directory the ReasoningBank server persists to (often ./chroma_data).",
        )
    if not path.is_dir():
        raise SourceError(
            f"{path} is a file, not a Chroma directory.",
            title="Not a Chroma store",
            hint="pass the directory that contains chroma.sqlite3.",
        )
    db = path / "chroma.sqlite3"
    if not db.is_file():
        raise SourceError(
            f"{path} is not a Chroma store: it has no chroma.sqlite3.",
            title="Not a Chroma store",
            hint="pass the directory that contains chroma.sqlite3 and the segment folders.",
        )
    try:
        with db.open("rb") as fh:
            magic = fh.read(16)
    except OSError as exc:
        raise SourceError(
            f"cannot read {db}: {exc.strerror}.",
            title="Source unreadable",
            hint="check the file's permissions.",
        ) from None
    if magic != SQLITE_MAGIC:
        raise SourceError(
            f"{db} is not an SQLite database (the file is damaged or not Chroma's).",
            title="Corrupted store",
            hint="restore the store from a backup; rbmigrate will not read a damaged file.",
        )
    return db


def read_format(conn: sqlite3.Connection, where: str) -> ChromaFormat:
    try:
        rows = conn.execute("SELECT dir, max(version) FROM migrations GROUP BY dir").fetchall()
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as exc:
        raise SourceError(
            f"{where} cannot be read as a Chroma database: {exc}.",
            title="Corrupted store",
            hint="restore the store from a backup, or check that it is a Chroma directory.",
        ) from None
    for needed in ("collections", "segments", "embeddings", "embedding_metadata"):
        if needed not in tables:
            raise SourceError(
                f"{where} is an SQLite file without Chroma's '{needed}' table: not a Chroma store.",
                title="Not a Chroma store",
            )
    fmt = ChromaFormat(migrations={str(d): int(v) for d, v in rows})
    sig = fmt.signature
    fmt.label = KNOWN_FORMATS.get(sig, "unknown chromadb version ({}/{}/{})".format(*sig))
    fmt.native = sig in KNOWN_FORMATS
    fmt.newer_than_installed = any(a > b for a, b in zip(sig, CURRENT, strict=True))
    fmt.needs_migration = sig != CURRENT and not fmt.newer_than_installed
    return fmt


def integrity_problem(conn: sqlite3.Connection) -> str | None:
    """quick_check on the snapshot: None when healthy, else SQLite's first complaint."""
    try:
        result = conn.execute("PRAGMA quick_check(1)").fetchone()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    if result and result[0] != "ok":
        return str(result[0])
    return None
