"""A re-run on a byte-identical source: check the target instead of reading every record.

A run that migrated a snapshot and ended ok leaves `unchanged.json` in its run directory:
the key of everything that decides the rows it expects (the snapshot's digest, rbmigrate's
version, the rule settings, the model, the dimension, the collections) and its tallies.

The next run of the same source and target, when that run is still the latest for the
fingerprint, takes a snapshot with the same key, and would read every record only to find
each one unchanged. Instead it copies that run's reading (its expected rows and trace
index) and verifies the target hash by hash against it, writing nothing. If the target no
longer holds exactly that (a row changed or went missing, a trace lost its task embedding,
or --delete-missing has rows to delete), the run migrates as usual.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import sqlite3
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rbmigrate import __version__
from rbmigrate.engine.context import RunContext, private_file
from rbmigrate.engine.expected import ExpectedRows
from rbmigrate.engine.migrate import Tally
from rbmigrate.engine.pipeline import MigrateOptions, Opened, fill_counts, plan_from_run, verdict
from rbmigrate.engine.session import Session
from rbmigrate.engine.traceindex import TraceIndex
from rbmigrate.engine.verify import VerifyResult, run_verify
from rbmigrate.errors import ExitCode
from rbmigrate.source.snapshot import file_sha256

MARKER = "unchanged.json"
EXPECTED = "expected.sqlite"
TRACES = "traces.sqlite"
REJECTS = "rejects.jsonl"


@dataclass
class EarlierReading:
    """A finished run's reading of the same bytes, with its counts as a re-run's."""

    run_id: str
    run_dir: Path
    tallies: dict[str, Tally]
    parents_missing: int


def reading_key(session: Session) -> str:
    """What the expected rows depend on; empty when the source has no snapshot digest."""
    source = session.source
    if not source.digest:
        return ""
    cfg = session.ctx.cfg
    legacy = source.traces_json
    key: dict[str, Any] = {
        "snapshot": source.digest,
        "traces_json": file_sha256(legacy) if legacy is not None and legacy.is_file() else None,
        "version": __version__,
        "collections": [c.name for c in session.selected],
        "workspaces": sorted(cfg.source.workspaces),
        "timezone": cfg.source.timezone,
        "reader": source.reader_name,
        "tenant": [cfg.source.chroma_tenant, cfg.source.chroma_database],
        "schema": cfg.target.schema,
        "dimension": session.dimension,
        "outcome_map": cfg.migration.outcome_map,
        "reembed_missing": cfg.migration.reembed_missing,
        "model": cfg.embedding.model,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def save_reading(session: Session, tallies: dict[str, Tally], parents_missing: int) -> None:
    """Called when a run that read every record of a snapshot ended ok."""
    key = reading_key(session)
    if not key:
        return
    data = {
        "key": key,
        "tallies": {name: t.as_json() for name, t in tallies.items()},
        "parents_missing": parents_missing,
    }
    with private_file(session.ctx.run_dir / MARKER) as fh:
        fh.write(json.dumps(data))


def as_unchanged(tally: Tally) -> Tally:
    """The same records, each found unchanged."""
    t = tally.copy()
    t.unchanged += t.inserted + t.updated
    t.inserted = t.updated = t.traces_inserted = t.traces_updated = 0
    return t


def earlier_reading(session: Session, previous: tuple[str, str] | None) -> EarlierReading | None:
    """The previous run's reading, if it ended ok and read these very bytes the same way."""
    if previous is None or previous[1] != "ok":
        return None
    run_id = previous[0]
    run_dir = session.ctx.cfg.data_dir() / "runs" / run_id
    try:
        data = json.loads((run_dir / MARKER).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("key") != reading_key(session):
        return None
    if not ((run_dir / EXPECTED).is_file() and (run_dir / TRACES).is_file()):
        return None
    return EarlierReading(
        run_id=run_id,
        run_dir=run_dir,
        tallies={n: as_unchanged(Tally.from_json(t)) for n, t in data["tallies"].items()},
        parents_missing=int(data.get("parents_missing", 0)),
    )


def copy_sqlite(src: Path, dest: Path) -> None:
    """A consistent copy, whatever the source's journal holds."""
    dest.unlink(missing_ok=True)
    old = sqlite3.connect(src)  # read-write: its journal files go away when it closes
    try:
        new = sqlite3.connect(dest)
        try:
            old.backup(new)
        finally:
            new.close()
    finally:
        old.close()


def take_reading(session: Session, earlier: EarlierReading) -> None:
    """This run's expected rows, trace index and rejects become the earlier run's. The
    trace index stays if the run then migrates: it describes the same bytes."""
    run_dir = session.ctx.run_dir
    session.index.close()
    copy_sqlite(earlier.run_dir / TRACES, run_dir / TRACES)
    session.index = TraceIndex(run_dir / TRACES)
    session.scan()  # finds every collection scanned and the traces built: their warnings
    copy_sqlite(earlier.run_dir / EXPECTED, run_dir / EXPECTED)
    if (earlier.run_dir / REJECTS).is_file():
        shutil.copyfile(earlier.run_dir / REJECTS, run_dir / REJECTS)


def drop_reading(session: Session) -> None:
    """Before migrating after all: the run's expected rows are written as it reads."""
    for name in (EXPECTED, REJECTS):
        with contextlib.suppress(OSError):
            (session.ctx.run_dir / name).unlink()


def verify_unchanged(
    ctx: RunContext, report: dict[str, Any], opts: MigrateOptions, opened: Opened
) -> ExitCode | None:
    """The whole run when the source is the earlier run's bytes and the target still holds
    what that run wrote; None when the run must migrate after all."""
    session, transport = opened.session, opened.transport
    earlier = earlier_reading(session, opened.previous)
    if earlier is None or session.store is None:
        return None
    cfg = ctx.cfg
    take_reading(session, earlier)
    done = False
    writer = transport.open_writer()
    try:
        writer.register_run(
            ctx.run_id,
            ctx.command,
            opened.fingerprint,
            report["source"],
            report["target"],
            cfg.redacted(),
            __version__,
        )
        writer.acquire(opened.fingerprint, ctx.run_id)  # no other run writes meanwhile
        writer.set_run(ctx.run_id, phase="verify")
        result = _verify(session, earlier)
        problem = _differs(result, delete_missing=cfg.migration.delete_missing)
        if problem:
            ctx.log(
                "info",
                f"the source is unchanged since run {earlier.run_id}, but the target {problem}: "
                "migrating",
                code="unchanged_source",
            )
            return None
        ctx.log(
            "info",
            f"the source is byte for byte the one run {earlier.run_id} migrated: the target was "
            "checked against that run's reading instead of reading every record again",
            code="unchanged_source",
        )
        ctx.log("info", "nothing to write: the target already holds every record", code="no_op")
        rejected = fill_counts(report, session, earlier.tallies, Counter(), earlier.parents_missing)
        report["counts"]["tasks_encoded"] = 0
        if cfg.migration.delete_missing:
            report["counts"]["deleted"] = 0
        report["verify"] = result.as_dict(strict_extra=cfg.migration.delete_missing)
        if opts.with_plan:
            report["plan"] = plan_from_run(session, earlier.tallies, report)
        report["rejects_file"] = str(ctx.run_dir / REJECTS)
        (ctx.run_dir / REJECTS).touch()
        code = verdict(ctx, report, result, rejected)
        writer.set_run(
            ctx.run_id,
            status="ok" if code == ExitCode.OK else "failed",
            phase="done",
            counts=report["counts"],
            finished=True,
        )
        if code == ExitCode.OK:
            save_reading(session, earlier.tallies, earlier.parents_missing)
        if opts.rejects_path:
            shutil.copyfile(ctx.run_dir / REJECTS, opts.rejects_path)
            report["rejects_copy"] = opts.rejects_path
        done = True
        return code
    except Exception as exc:
        if not transport.transient(exc):
            raise
        ctx.log(
            "warning",
            f"lost the database connection while checking the target ({exc}); migrating",
            code="reconnect",
        )
        session.store.reconnect()
        return None
    finally:
        writer.close()
        if not done:
            drop_reading(session)


def _verify(session: Session, earlier: EarlierReading) -> VerifyResult:
    """Every row by its stored hash against the earlier reading (nothing was written)."""
    assert session.store is not None
    expected = ExpectedRows(session.ctx.run_dir / EXPECTED)
    try:
        result = run_verify(
            session,
            session.store,
            reembed=session.ctx.cfg.migration.reembed_missing,
            expected=expected,
            content_ids=set(),
            trace_content_ids=set(),
        )
    finally:
        expected.close()
    result.source = f"run {earlier.run_id}'s reading of the same bytes"
    return result


def _differs(result: VerifyResult, *, delete_missing: bool) -> str:
    """Why the target is not what the earlier run left; empty when it is."""
    if not result.ok:
        return (
            f"no longer matches it ({result.missing} missing, {result.mismatched} mismatched, "
            f"{result.traces['missing']} traces missing, {result.traces['mismatched']} "
            "traces mismatched)"
        )
    if result.traces["no_embedding"]:
        return f"has {result.traces['no_embedding']} traces without a task embedding"
    if delete_missing and result.extra:
        return f"holds {result.extra} rows the source no longer has (--delete-missing)"
    return ""
