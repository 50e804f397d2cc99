"""Engine calls the wizard needs that `engine.api` does not offer (yet), built from its parts.

- `scan`: discover the source (snapshot, format, collections) without touching a target.
- `inspect_record`: one source record and what the record rules make of it, read from the
  snapshot a plan kept, so the Plan screen can show both side by side.
- `discard_snapshot`: drop a kept snapshot when the wizard no longer needs it.
They reuse the engine's Session, rules and run bookkeeping; nothing here decides a rule.
"""

from __future__ import annotations

import shutil
from dataclasses import fields
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import numpy as np

from rbmigrate.config import Config
from rbmigrate.engine.api import Outcome, run_command
from rbmigrate.engine.context import RunContext
from rbmigrate.engine.session import Session
from rbmigrate.errors import ExitCode, SourceError
from rbmigrate.records.codes import REJECT_HELP, WARN_HELP
from rbmigrate.records.hashing import memory_hash
from rbmigrate.records.model import MemoryRow, Normalized, SourceRecord
from rbmigrate.records.normalize import normalize

SNAPSHOT_PARTS = ("snapshot", "scratch")


def _scan_body(ctx: RunContext, report: dict[str, Any]) -> ExitCode:
    session = Session.open(ctx, need_target=False)
    try:
        report["source"] = session.source.describe()
        report["scan"] = {
            "selected": [c.name for c in session.selected],
            "problems": [p.as_dict() for p in session.problems],
            "notes": list(session.source.notes),
            "dimension": session.dimension,
        }
    finally:
        session.close(keep_snapshot=False)
    return ExitCode.OK


def scan(cfg: Config, **kw: Any) -> Outcome:
    """Snapshot and discover the source; the report has `source` and `scan`."""
    return run_command(cfg, "scan", _scan_body, **kw)


def _vector(vec: Any) -> str:
    if vec is None:
        return "none"
    arr = np.asarray(vec, dtype=np.float64)
    head = ", ".join(f"{x:.4f}" for x in arr[:3])
    return f"{arr.shape[0]} floats [{head}, …] norm {float(np.linalg.norm(arr)):.3f}"


def _plain(value: Any) -> Any:
    if isinstance(value, UUID | datetime):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def source_view(rec: SourceRecord) -> dict[str, Any]:
    return {
        "id": rec.id,
        "document": rec.document,
        "metadata": rec.metadata,
        "embedding": _vector(rec.embedding),
    }


def row_view(row: MemoryRow) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(row):
        value = getattr(row, f.name)
        out[f.name] = _vector(value) if f.name == "embedding" else _plain(value)
    return out


def describe(result: Normalized) -> dict[str, Any]:
    """The source record, the row the rules made (or the reject), and each rule applied."""
    rules = [
        {"code": w.code, "message": w.message, "rule": WARN_HELP.get(w.code, "")}
        for w in result.warnings
    ]
    reject = None
    if result.reject is not None:
        code = result.reject.code
        reject = {"code": code, "message": result.reject.message, "rule": REJECT_HELP.get(code, "")}
    return {
        "source": source_view(result.record),
        "row": row_view(result.row) if result.row is not None else None,
        "reject": reject,
        "warnings": rules,
        "skipped": result.skipped,
    }


def inspect_record(
    cfg: Config, run_dir: Path, source_id: str, collection: str | None = None
) -> dict[str, Any]:
    """Find `source_id` in the snapshot kept in `run_dir` and apply the record rules to it.

    The plan's samples do not name their collection, so every selected one is searched.
    """
    ctx = RunContext(cfg=cfg, command="inspect", run_id=run_dir.name, run_dir=run_dir)
    session = Session.open(ctx, need_target=False)
    try:
        infos = [session.source.collection(collection)] if collection else session.selected
        for info in infos:
            rules = session.rules(info, reembed=cfg.migration.reembed_missing)
            for page in session.source.reader.pages(
                info, after=0, with_embeddings=True, page_size=cfg.migration.batch_size
            ):
                for rec in page:
                    if rec.id == source_id:
                        result = normalize(rec, rules)
                        if result.row is not None:  # the hash plan and migrate compare
                            result.row.source_hash = memory_hash(result.row, cfg.embedding.model)
                        return describe(result)
    finally:
        session.close(keep_snapshot=True)
    raise SourceError(
        f"record {source_id!r} is not in the source any more.",
        title="Record not found",
        hint="run the plan again.",
    )


def discard_snapshot(run_dir: Path) -> None:
    """Remove a snapshot kept for inspection (what Session.close does when not keeping)."""
    for part in SNAPSHOT_PARTS:
        shutil.rmtree(run_dir / part, ignore_errors=True)
    (run_dir / "snapshot.json").unlink(missing_ok=True)
