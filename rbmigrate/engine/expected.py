"""What the target must hold after this run: source id -> hash of every accepted record.

Written by the migration as it goes (before each batch commits), read by the verify that
closes the run: the source side of the check is then this run's own reading of the
snapshot, with no second pass over the store. It is used only when its count equals the
run's accepted records; a killed run may lose the last uncommitted rows, and is then
verified against the snapshot.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path

from rbmigrate.records.model import MemoryRow

COMMIT_ROWS = 10_000


class ExpectedRows:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = sqlite3.connect(path)
        self.db.execute("PRAGMA journal_mode=WAL")
        # no fsync per batch: a killed process loses nothing (the OS has the pages), and after
        # an OS crash the count no longer matches the run's and verify reads the snapshot
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS expected (collection TEXT, source_id TEXT, hash TEXT,"
            " workspace TEXT, PRIMARY KEY (collection, source_id)) WITHOUT ROWID"
        )
        self._pending = 0

    def add(self, rows: Iterable[MemoryRow]) -> None:
        """Committed every COMMIT_ROWS rows: each commit writes every page the batch touched
        (random keys: most of them) to the WAL, which cost 19 µs a row at one per batch. A
        kill loses at most the uncommitted tail; the count then falls short of the run's,
        and verify reads the snapshot instead."""
        params = [(r.source_collection, r.source_id, r.source_hash, r.workspace_id) for r in rows]
        self.db.executemany("INSERT OR REPLACE INTO expected VALUES (?, ?, ?, ?)", params)
        self._pending += len(params)
        if self._pending >= COMMIT_ROWS:
            self.commit()

    def commit(self) -> None:
        self.db.commit()
        self._pending = 0

    def remove(self, collection: str, source_ids: Iterable[str]) -> None:
        self.db.executemany(
            "DELETE FROM expected WHERE collection = ? AND source_id = ?",
            [(collection, s) for s in source_ids],
        )
        self.db.commit()

    def count(self) -> int:
        row = self.db.execute("SELECT count(*) FROM expected").fetchone()
        return int(row[0]) if row else 0

    def pages(self, collection: str, size: int) -> Iterator[list[tuple[str, str, str | None]]]:
        last = ""
        while True:
            rows = self.db.execute(
                "SELECT source_id, hash, workspace FROM expected WHERE collection = ? AND source_id > ?"
                " ORDER BY source_id LIMIT ?",
                (collection, last, size),
            ).fetchall()
            if not rows:
                return
            yield [(r[0], r[1], r[2]) for r in rows]
            last = rows[-1][0]

    def close(self) -> None:
        self.commit()
        self.db.close()
