"""DualWriteStorage: write both stores, read one — the live switch-over.

The primary's answer is the caller's answer. A write that the secondary refuses (down,
timing out, rejecting) goes to a local outbox (SQLite, survives restarts) and is replayed in
order before the next write and on `flush()`, so the secondary never loses a trace and never
slows the primary down by more than one failed attempt.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

from rbmigrate.storage.base import MemoryItem, StorageBackendInterface, prepared_items


class DualWriteStorage(StorageBackendInterface):
    def __init__(
        self,
        primary: StorageBackendInterface,
        secondary: StorageBackendInterface,
        outbox: str | Path = "rbmigrate-outbox.sqlite",
    ) -> None:
        self.primary = primary
        self.secondary = secondary
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(outbox), check_same_thread=False, isolation_level=None)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
            " op TEXT NOT NULL, args TEXT NOT NULL, error TEXT, attempts INTEGER DEFAULT 0)"
        )
        self.last_error: str | None = None

    # --- the outbox ----------------------------------------------------------------------
    def pending(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM outbox").fetchone()[0])

    def _apply(self, op: str, args: dict[str, Any]) -> None:
        if op == "add_trace":
            kw = dict(args)
            kw["timestamp"] = datetime.fromisoformat(kw["timestamp"])
            self.secondary.add_trace(**kw)
        elif op == "delete_old_traces":
            self.secondary.delete_old_traces(**args)
        elif op == "delete_workspace":
            self.secondary.delete_workspace(**args)
        else:  # a newer version's entry: keep it, never drop a write
            raise ValueError(f"unknown outbox operation {op!r}")

    def _flush_locked(self) -> bool:
        rows = self._db.execute("SELECT seq, op, args FROM outbox ORDER BY seq").fetchall()
        for seq, op, args in rows:
            try:
                self._apply(op, json.loads(args))
            except Exception as exc:  # still down: keep this and everything after it
                self.last_error = f"{type(exc).__name__}: {exc}"
                self._db.execute(
                    "UPDATE outbox SET attempts = attempts + 1, error = ? WHERE seq = ?",
                    (self.last_error[:500], seq),
                )
                return False
            self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
        return True

    def flush(self) -> int:
        """Replay what the secondary missed; returns how many are still pending."""
        with self._lock:
            self._flush_locked()
            return int(self._db.execute("SELECT count(*) FROM outbox").fetchone()[0])

    def _secondary(self, op: str, args: dict[str, Any]) -> None:
        with self._lock:
            if self._flush_locked():
                try:
                    self._apply(op, args)
                    return
                except Exception as exc:
                    self.last_error = f"{type(exc).__name__}: {exc}"
            self._db.execute(
                "INSERT INTO outbox (op, args, error) VALUES (?, ?, ?)",
                (op, json.dumps(args, default=str), (self.last_error or "")[:500]),
            )

    # --- the interface -----------------------------------------------------------------------
    def add_trace(
        self,
        trace_id: str,
        task: str,
        trajectory: list[Any],
        outcome: str,
        memory_items: list[Any],
        metadata: dict[str, Any] | None = None,
        workspace_id: str | None = None,
        *,
        timestamp: datetime | None = None,
    ) -> str:
        when = timestamp or datetime.now()
        items = prepared_items(memory_items, when)  # same ids and times in both stores
        args = {
            "trace_id": trace_id,
            "task": task,
            "trajectory": trajectory,
            "outcome": outcome,
            "memory_items": items,
            "metadata": metadata,
            "workspace_id": workspace_id,
            "timestamp": when.isoformat(),
        }
        result = self.primary.add_trace(
            trace_id, task, trajectory, outcome, items, metadata, workspace_id, timestamp=when
        )
        self._secondary("add_trace", args)
        return result

    def query_similar_memories(
        self,
        query_text: str,
        n_results: int = 5,
        include_errors: bool = True,
        domain_filter: str | None = None,
        workspace_id: str | None = None,
    ) -> list[MemoryItem]:
        return self.primary.query_similar_memories(
            query_text, n_results, include_errors, domain_filter, workspace_id
        )

    def get_statistics(self, workspace_id: str | None = None) -> dict[str, Any]:
        return self.primary.get_statistics(workspace_id)

    def delete_old_traces(
        self, retention_days: int, workspace_id: str | None = None
    ) -> dict[str, int]:
        result = self.primary.delete_old_traces(retention_days, workspace_id)
        self._secondary(
            "delete_old_traces", {"retention_days": retention_days, "workspace_id": workspace_id}
        )
        return result

    def delete_workspace(self, workspace_id: str) -> dict[str, int]:
        result = self.primary.delete_workspace(workspace_id)
        self._secondary("delete_workspace", {"workspace_id": workspace_id})
        return result

    def close(self) -> None:
        self.flush()
        self.primary.close()
        self.secondary.close()
        with self._lock:
            self._db.close()
