"""Pass 1 of every run: what each memory says about its trace, kept on disk.

Traces are rebuilt from all their memories, which may sit anywhere in the store, so a
first pass over metadata (cheap: no vectors) records one observation per memory in an
SQLite file in the run directory, and the traces are then built from it in trace order.
The same file answers "is this memory id already taken?" (duplicates across collections
or case variants of one UUID) and "does this parent exist in the source?". Memory stays flat.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from rbmigrate.records.hashing import canonical_json, trace_hash
from rbmigrate.records.model import Issue, TraceObservation, TraceRow
from rbmigrate.records.normalize import RuleContext
from rbmigrate.records.traces import build_trace

SCHEMA = """
CREATE TABLE IF NOT EXISTS obs (
    trace_id TEXT NOT NULL, collection TEXT NOT NULL, source_id TEXT NOT NULL, position INTEGER,
    raw_trace_id TEXT, synthetic INTEGER, task TEXT, outcome TEXT, ts TEXT, workspace TEXT);
CREATE TABLE IF NOT EXISTS memories (
    id TEXT PRIMARY KEY, collection TEXT NOT NULL, source_id TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS duplicates (
    collection TEXT, source_id TEXT, id TEXT, first_collection TEXT, first_source_id TEXT,
    PRIMARY KEY (collection, source_id));
CREATE TABLE IF NOT EXISTS traces (
    id TEXT PRIMARY KEY, hash TEXT, ts TEXT, memories INTEGER, task TEXT, row TEXT,
    warnings TEXT) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS scanned (collection TEXT PRIMARY KEY, records INTEGER);
CREATE TABLE IF NOT EXISTS source_ids (collection TEXT NOT NULL, source_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT);
"""


def _ts(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def trace_to_json(row: TraceRow) -> str:
    return canonical_json(
        {
            "id": str(row.id),
            "task": row.task,
            "trajectory": row.trajectory,
            "outcome": row.outcome,
            "metadata": row.metadata,
            "parent_trace_id": row.parent_trace_id,
            "timestamp": row.timestamp,
            "num_memories": row.num_memories,
            "workspace_id": row.workspace_id,
            "source_id": row.source_id,
            "source_hash": row.source_hash,
        }
    ).decode("utf-8")


def trace_from_json(text: str) -> TraceRow:
    d = json.loads(text)
    return TraceRow(
        id=UUID(d["id"]),
        task=d["task"],
        trajectory=d["trajectory"],
        outcome=d["outcome"],
        metadata=d["metadata"],
        parent_trace_id=UUID(d["parent_trace_id"]) if d["parent_trace_id"] else None,
        timestamp=datetime.fromisoformat(d["timestamp"]),
        num_memories=d["num_memories"],
        workspace_id=d["workspace_id"],
        source_id=d["source_id"],
        source_hash=d["source_hash"],
    )


class TraceIndex:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = sqlite3.connect(path, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=OFF")
        self._upgrade()
        self.db.executescript(SCHEMA)
        self._time_cache: dict[UUID, datetime | None] = {}

    def _upgrade(self) -> None:
        """A run directory from an older rbmigrate keeps traces without their summary
        columns: drop them (they are rebuilt from the observations, which are unchanged)."""
        cols = {r[1] for r in self.db.execute("PRAGMA table_info(traces)")}
        if cols and "memories" not in cols:
            self.db.execute("DROP TABLE traces")
            self.db.execute("CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT)")
            self.db.execute("DELETE FROM state WHERE key = 'traces_built'")
            self.db.commit()

    # --- pass 1 --------------------------------------------------------------------------
    def is_scanned(self, collection: str) -> bool:
        return (
            self.db.execute("SELECT 1 FROM scanned WHERE collection = ?", (collection,)).fetchone()
            is not None
        )

    def reset_collection(self, collection: str) -> None:
        self.db.execute("DELETE FROM obs WHERE collection = ?", (collection,))
        self.db.execute("DELETE FROM memories WHERE collection = ?", (collection,))
        self.db.execute("DELETE FROM duplicates WHERE collection = ?", (collection,))
        self.db.execute("DELETE FROM source_ids WHERE collection = ?", (collection,))
        self.db.execute("DELETE FROM state WHERE key = 'traces_built'")

    def add(self, observations: Iterable[tuple[TraceObservation, UUID]]) -> None:
        """Record observations with their memory ids; a taken id marks a duplicate."""
        items = list(observations)
        self.db.executemany(
            "INSERT INTO obs VALUES (?,?,?,?,?,?,?,?,?,?)",
            [
                (
                    str(o.trace_id),
                    o.collection,
                    o.source_id,
                    o.position,
                    o.raw_trace_id,
                    int(o.synthetic),
                    o.task,
                    o.outcome,
                    _ts(o.timestamp),
                    o.workspace_id,
                )
                for o, _ in items
            ],
        )
        before = self.db.total_changes
        self.db.executemany(
            "INSERT OR IGNORE INTO memories VALUES (?, ?, ?)",
            [(str(mid), o.collection, o.source_id) for o, mid in items],
        )
        if self.db.total_changes - before == len(items):
            return  # every id was free (almost always): no record to look at one by one
        for o, mid in items:
            first = self.db.execute(
                "SELECT collection, source_id FROM memories WHERE id = ?", (str(mid),)
            ).fetchone()
            if first != (o.collection, o.source_id):
                self.db.execute(
                    "INSERT OR REPLACE INTO duplicates VALUES (?, ?, ?, ?, ?)",
                    (o.collection, o.source_id, str(mid), first[0], first[1]),
                )

    def add_source_ids(self, collection: str, ids: Iterable[str]) -> None:
        """Every record of a selected collection, whatever its workspace (for delete-missing)."""
        self.db.executemany("INSERT INTO source_ids VALUES (?, ?)", [(collection, i) for i in ids])

    def source_ids(self) -> Iterator[tuple[str, str]]:
        yield from self.db.execute("SELECT collection, source_id FROM source_ids")

    def mark_scanned(self, collection: str, records: int) -> None:
        self.db.execute("INSERT OR REPLACE INTO scanned VALUES (?, ?)", (collection, records))
        self.db.commit()

    # --- traces -----------------------------------------------------------------------
    def _grouped(self) -> Iterator[tuple[UUID, list[TraceObservation]]]:
        cursor = self.db.execute(
            "SELECT trace_id, collection, source_id, position, raw_trace_id, synthetic, task, outcome,"
            " ts, workspace FROM obs ORDER BY trace_id"
        )
        current: str | None = None
        trace = UUID(int=0)
        group: list[TraceObservation] = []
        for tid, coll, sid, pos, raw, syn, task, outcome, ts, ws in cursor:
            if tid != current:
                if group:
                    yield trace, group
                    group = []
                current, trace = tid, UUID(tid)  # one UUID per trace, not per observation
            group.append(
                TraceObservation(
                    trace_id=trace,
                    raw_trace_id=raw,
                    synthetic=bool(syn),
                    task=task or "",
                    outcome=outcome,
                    timestamp=datetime.fromisoformat(ts) if ts else None,
                    workspace_id=ws,
                    collection=coll,
                    source_id=sid,
                    position=pos,
                )
            )
        if group:
            yield trace, group

    def build_traces(
        self,
        ctx: RuleContext,
        model_name: str,
        legacy: dict[UUID, dict[str, Any]],
    ) -> dict[str, int]:
        """Build every trace row once; returns warning counts by code."""
        if self.db.execute("SELECT 1 FROM state WHERE key = 'traces_built'").fetchone():
            row = self.db.execute("SELECT value FROM state WHERE key = 'trace_warnings'").fetchone()
            stored: dict[str, int] = json.loads(row[0]) if row else {}
            return stored
        self.db.execute("DELETE FROM traces")
        warnings: dict[str, int] = {}
        seen: set[UUID] = set()
        batch: list[tuple[str, str, str, int, str, str, str]] = []

        def keep(row: TraceRow | None) -> None:
            if row is None:
                return
            row.source_hash = trace_hash(row, model_name)
            for w in row.warnings:
                warnings[w.code] = warnings.get(w.code, 0) + 1
            batch.append(
                (
                    str(row.id),
                    row.source_hash,
                    row.timestamp.isoformat(),
                    row.num_memories,
                    row.task,
                    trace_to_json(row),
                    json.dumps([[w.code, w.message] for w in row.warnings])
                    if row.warnings
                    else "[]",
                )
            )
            if len(batch) >= 5000:
                self.db.executemany("INSERT OR REPLACE INTO traces VALUES (?,?,?,?,?,?,?)", batch)
                batch.clear()

        for tid, group in self._grouped():
            if tid in legacy:
                seen.add(tid)
            keep(build_trace(tid, group, legacy.get(tid), ctx))
        for tid, trace in legacy.items():
            if tid not in seen and self._legacy_selected(trace, ctx):
                keep(build_trace(tid, [], trace, ctx))
        self.db.executemany("INSERT OR REPLACE INTO traces VALUES (?,?,?,?,?,?,?)", batch)
        self.db.execute(
            "INSERT OR REPLACE INTO state VALUES ('trace_warnings', ?)", (json.dumps(warnings),)
        )
        self.db.execute("INSERT OR REPLACE INTO state VALUES ('traces_built', '1')")
        self.db.commit()
        return warnings

    @staticmethod
    def _legacy_selected(trace: dict[str, Any], ctx: RuleContext) -> bool:
        if ctx.workspaces is None:
            return True
        meta = trace.get("metadata") if isinstance(trace.get("metadata"), dict) else {}
        ws = (meta or {}).get("workspace_id") or ""
        return str(ws) in ctx.workspaces

    def trace_time(self, trace_id: UUID) -> datetime | None:
        if trace_id not in self._time_cache:
            if len(self._time_cache) > 50000:
                self._time_cache.clear()
            row = self.db.execute("SELECT ts FROM traces WHERE id = ?", (str(trace_id),)).fetchone()
            self._time_cache[trace_id] = datetime.fromisoformat(row[0]) if row else None
        return self._time_cache[trace_id]

    def traces(self, ids: Iterable[UUID]) -> dict[UUID, TraceRow]:
        out: dict[UUID, TraceRow] = {}
        for tid, text, warn in self._where_in(
            "SELECT id, row, warnings FROM traces WHERE id IN ({})", [str(i) for i in ids]
        ):
            row = trace_from_json(text)
            row.warnings = [Issue(c, m) for c, m in json.loads(warn)]
            out[UUID(tid)] = row
        return out

    def _where_in(self, query: str, keys: list[str], *before: str) -> Iterator[Any]:
        """Rows of `query` for all `keys`, 900 placeholders at a time (SQLite's limit is 999);
        `before` are parameters ahead of the IN list."""
        for start in range(0, len(keys), 900):
            chunk = keys[start : start + 900]
            yield from self.db.execute(query.format(",".join("?" * len(chunk))), (*before, *chunk))

    def _pages(self, columns: str, page: int, where: str = "") -> Iterator[list[Any]]:
        """Trace rows in id order, `page` at a time: (id, *columns)."""
        last = ""
        while True:
            rows = self.db.execute(
                f"SELECT id, {columns} FROM traces WHERE id > ?{where} ORDER BY id LIMIT ?",
                (last, page),
            ).fetchall()
            if not rows:
                return
            yield rows
            last = rows[-1][0]

    def iter_traces(self, page: int = 2000) -> Iterator[list[TraceRow]]:
        for rows in self._pages("row", page):
            yield [trace_from_json(r[1]) for r in rows]

    def unreferenced(self, page: int = 2000) -> Iterator[list[TraceRow]]:
        """Traces no memory refers to (legacy traces.json entries), without decoding the rest."""
        for rows in self._pages("row", page, " AND memories = 0"):
            yield [trace_from_json(r[1]) for r in rows]

    def iter_summaries(self, page: int = 5000) -> Iterator[list[tuple[UUID, str, int, str]]]:
        """(id, hash, memories, task) of every trace: what checks need, no row decoded."""
        for rows in self._pages("hash, memories, task", page):
            yield [(UUID(r[0]), r[1], r[2], r[3]) for r in rows]

    def forget_seen(self) -> None:
        self.db.execute("CREATE TEMP TABLE IF NOT EXISTS seen (id TEXT PRIMARY KEY) WITHOUT ROWID")
        self.db.execute("DELETE FROM temp.seen")
        self.db.commit()

    def first_seen(self, ids: Iterable[UUID]) -> list[UUID]:
        """Those of `ids` not seen since forget_seen(), now marked seen. A table, not a set:
        a pass meets every trace, 200,000 of them at 400,000 records."""
        keys = [str(i) for i in ids]
        old = {r[0] for r in self._where_in("SELECT id FROM temp.seen WHERE id IN ({})", keys)}
        new = [k for k in keys if k not in old]
        self.db.executemany("INSERT INTO temp.seen VALUES (?)", [(k,) for k in new])
        self.db.commit()
        return [UUID(k) for k in new]

    def mark_to_embed(self, pages: Iterable[list[UUID]]) -> int:
        """Remember which traces need a task embedding; returns how many."""
        self.db.execute("DROP TABLE IF EXISTS to_embed")
        self.db.execute("CREATE TABLE to_embed (id TEXT PRIMARY KEY) WITHOUT ROWID")
        count = 0
        for ids in pages:
            self.db.executemany("INSERT INTO to_embed VALUES (?)", [(str(i),) for i in ids])
            count += len(ids)
        self.db.commit()
        return count

    def to_embed(self, chunk: int) -> Iterator[list[tuple[UUID, str]]]:
        """(id, task) of the marked traces, shortest task first, `chunk` at a time."""
        cursor = self.db.execute(
            "SELECT t.id, t.task FROM to_embed e JOIN traces t ON t.id = e.id"
            " ORDER BY length(t.task), t.task"
        )
        while rows := cursor.fetchmany(chunk):
            yield [(UUID(tid), task) for tid, task in rows]

    def hashes(self, ids: Iterable[UUID]) -> dict[UUID, str]:
        rows = self._where_in("SELECT id, hash FROM traces WHERE id IN ({})", [str(i) for i in ids])
        return {UUID(tid): h for tid, h in rows}

    def trace_count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM traces").fetchone()[0])

    def duplicates_of(self, collection: str, source_ids: list[str]) -> dict[str, tuple[str, str]]:
        """For each of `source_ids` whose target id another record took first: that record
        (collection, source id). One query per 900 ids: a query per record cost 15 µs each."""
        rows = self._where_in(
            "SELECT source_id, first_collection, first_source_id FROM duplicates"
            " WHERE collection = ? AND source_id IN ({})",
            source_ids,
            collection,
        )
        return {sid: (first_coll, first_sid) for sid, first_coll, first_sid in rows}

    def known_memories(self, ids: Iterable[UUID]) -> set[UUID]:
        rows = self._where_in("SELECT id FROM memories WHERE id IN ({})", [str(i) for i in ids])
        return {UUID(r[0]) for r in rows}

    def close(self) -> None:
        self.db.close()
