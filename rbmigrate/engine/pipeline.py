"""`migrate` and the headless pipeline: connect, resume or start, bootstrap, write, verify.

The steps, in order: connect to the target (a bad URL fails in a second); find the run to
continue (explicit --resume, or an unfinished run for this source and target); snapshot and
scan the source; bootstrap the schema if needed; start encoding trace tasks; write every
batch; link parents, delete what the source lost (if asked), fill task embeddings while the
memory indexes build; verify; record how the run ended.

In the headless pipeline the plan section comes from the migration pass itself: the merge
classifies every record as new, changed or unchanged, exactly as a separate dry run would,
without reading the store twice (`rbmigrate plan` is the dry run).
"""

from __future__ import annotations

import contextlib
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rbmigrate import __version__
from rbmigrate.engine.context import RunContext, private_file
from rbmigrate.engine.migrate import Migration, Tally
from rbmigrate.engine.report import set_warnings
from rbmigrate.engine.session import Session
from rbmigrate.errors import (
    ExitCode,
    Interrupted,
    RbmigrateError,
    RunBusy,
    SchemaError,
    SourceError,
)
from rbmigrate.target.schema import SchemaStatus, apply_schema, incompatible_error, render_schema
from rbmigrate.target.transport import Transport

if TYPE_CHECKING:
    from rbmigrate.engine.verify import VerifyResult


@dataclass
class MigrateOptions:
    with_plan: bool
    resume: str | None = None
    deep: bool = False
    retry_rejects: str | None = None
    rejects_path: str | None = None


def ensure_schema(ctx: RunContext, session: Session, report: dict[str, Any]) -> None:
    """Bootstrap the target when its schema is missing or partial; refuse when incompatible.
    Over REST the schema cannot be created: the SQL is written for the SQL editor instead."""
    from rbmigrate.target.postgres import PostgresStore

    status = session.schema
    store = session.store
    if status is None or store is None:
        return
    if status.problems:
        raise incompatible_error(status)
    if not status.missing:
        return
    if not isinstance(store, PostgresStore):
        raise rest_schema_missing(ctx, status, session.dimension)
    if set(status.missing) <= deferred_by_run(ctx, store, status):
        return  # a resumed initial load: its dropped indexes are built after the data
    with ctx.phase("bootstrap", unit="objects") as done:
        ctx.log("info", f"creating {len(status.missing)} schema objects in {ctx.cfg.target.schema}")
        after = apply_schema(store.conn, ctx.cfg.target.schema, session.dimension)
        done[0] = len(status.missing)
    report["schema"] = {
        "before": status.as_dict(),
        "after": after.as_dict(),
        "dimension": session.dimension,
        "applied": True,
    }
    store.refresh_types()
    session.schema = store.schema_status(session.dimension)


def deferred_by_run(ctx: RunContext, store: Any, status: SchemaStatus) -> set[str]:
    """The indexes this run dropped to build after its data (a resumed initial load): they
    are not missing, and bootstrapping them again would make the rest of the load maintain
    the HNSW indexes row by row."""
    from rbmigrate.target.indexes import pending_indexes

    if "table rbmigrate_runs" not in status.present:
        return set()
    pending = pending_indexes(store.conn, ctx.cfg.target.schema, ctx.run_id)
    return {f"index {p['name']}" for p in pending}


def rest_schema_missing(ctx: RunContext, status: SchemaStatus, dimension: int) -> SchemaError:
    """The schema to paste, written into the run directory, and the error that says so."""
    path = ctx.run_dir / f"schema-{dimension}.sql"
    with private_file(path) as fh:
        fh.write(render_schema(dimension, ctx.cfg.target.schema))
    shown = ", ".join(status.missing[:5]) + (" …" if len(status.missing) > 5 else "")
    return SchemaError(
        f"the target's schema is {status.state()} ({len(status.missing)} objects missing: "
        f"{shown}); over REST rbmigrate cannot create it.",
        title="Schema missing",
        hint=f"paste {path} into the Supabase SQL editor (Dashboard → SQL Editor → Run) and run "
        "again; or bootstrap once over a direct connection with --db-url.",
    )


def refuse_problems(session: Session) -> None:
    """Refused collections stop a migration before anything is written."""
    for p in session.problems:
        if p.refused and p.code == "collection_dimension_mismatch":
            raise SchemaError(
                f"{p.message}.",
                title="Dimension mismatch",
                hint="migrate that collection into another schema (--schema), or deselect it.",
            )
        if p.refused:
            raise SourceError(
                f"{p.message}.",
                title="Collection refused",
                hint="deselect it: name the collections to migrate with --collection.",
            )


def fill_counts(
    report: dict[str, Any],
    session: Session,
    tallies: dict[str, Tally],
    read_counts: Counter[str],
    parents_missing: int,
) -> int:
    """The report's counts from the run's tallies; returns the number of rejects."""
    totals: Counter[str] = Counter()
    warnings: Counter[str] = Counter(session.trace_warnings)
    rejects: Counter[str] = Counter()
    for tally in tallies.values():
        for key in (
            "records",
            "inserted",
            "updated",
            "unchanged",
            "rejected",
            "skipped",
            "traces_inserted",
            "traces_updated",
        ):
            totals[key] += getattr(tally, key)
        warnings.update(tally.warnings)
        rejects.update(tally.rejects)
    if parents_missing:
        warnings["parent_not_found"] = parents_missing
    unselected = sum(c.count for c in session.unselected())
    report["counts"].update(
        {
            "source_records": totals["records"] + unselected,
            "inserted": totals["inserted"],
            "updated": totals["updated"],
            "unchanged": totals["unchanged"],
            "rejected": totals["rejected"],
            "skipped": totals["skipped"] + unselected,
            "traces_inserted": totals["traces_inserted"],
            "traces_updated": totals["traces_updated"],
        }
    )
    report["rejects_by_code"] = {k: v for k, v in sorted(rejects.items()) if v}
    set_warnings(report, warnings)
    if session.source.kind == "http":  # no snapshot: reconcile with the counts taken at the start
        for coll in session.selected:
            read = read_counts.get(coll.name, 0)
            if read and read != coll.count:
                session.ctx.log(
                    "warning",
                    f"{coll.name} had {coll.count} records at the start and {read} "
                    "were read: the server was written to during the run",
                    code="source_changed",
                )
    return totals["rejected"]


def plan_from_run(
    session: Session, tallies: dict[str, Tally], report: dict[str, Any]
) -> dict[str, Any]:
    """The pipeline's plan section: what the merge found for every record."""
    rows = []
    for coll in session.selected:
        t = tallies.get(coll.name)
        if t is not None:
            rows.append(
                {
                    "collection": coll.name,
                    "workspace": None,
                    "new": t.inserted,
                    "changed": t.updated,
                    "unchanged": t.unchanged,
                    "target_only": 0,
                    "invalid": t.rejected,
                    "skipped": t.skipped,
                }
            )
    c = report["counts"]
    extra = (report.get("verify") or {}).get("extra", 0)
    return {
        "new": c["inserted"],
        "changed": c["updated"],
        "unchanged": c["unchanged"],
        "target_only": extra,
        "invalid": c["rejected"],
        "skipped": c["skipped"],
        "by_collection": rows,
        "invalid_by_code": {
            code: {"count": n, "samples": []} for code, n in report["rejects_by_code"].items()
        },
        "traces": {"new": c["traces_inserted"], "changed": c["traces_updated"]},
        "collection_problems": [p.as_dict() for p in session.problems],
        "schema": session.schema.as_dict() if session.schema else None,
        "dimension": session.dimension,
        "from_migration": True,
        "note": "classified by the migration's merge in the same pass; rejected records are in "
        "rejects.jsonl, `rbmigrate plan` is the separate dry run",
    }


@dataclass
class Opened:
    session: Session
    transport: Transport
    fingerprint: str
    resumed: bool
    previous: tuple[str, str] | None  # the latest earlier run (id, status), when a new run


def _open(ctx: RunContext, opts: MigrateOptions) -> Opened:
    """Connect, choose the run (resume or new), snapshot and scan."""
    from rbmigrate.engine.runs import choose_run, fingerprint
    from rbmigrate.engine.session import retry_logger
    from rbmigrate.target.transport import open_transport

    cfg = ctx.cfg
    with ctx.phase("connect", unit="steps"):
        transport = open_transport(cfg, cancel=ctx.control.cancel, on_retry=retry_logger(ctx))
        try:
            store = transport.open_store()
            store.describe()  # the first request: a wrong URL or key fails here
        except BaseException:
            transport.close()
            raise
    fp = fingerprint(cfg)
    resumed = False
    previous = None
    try:
        if opts.retry_rejects is None:
            choice = choose_run(store, fp, opts.resume)
            if choice.message:
                ctx.log("info", choice.message, code="resume")
            if choice.run_id:
                ctx.adopt(choice.run_id)
            resumed, previous = choice.resumed, choice.previous
    except BaseException:
        store.close()
        transport.close()
        raise
    session = Session.open(ctx, store=store, transport=transport)
    return Opened(session, transport, fp, resumed, previous)


def register(
    ctx: RunContext, report: dict[str, Any], transport: Transport, fp: str, *, defer: bool
) -> None:
    """The run's row in rbmigrate_runs; `defer`: into empty tables, drop the indexes to
    build after the data (not on a resumed run, whose load already decided)."""
    from rbmigrate.target.indexes import defer_indexes
    from rbmigrate.target.writer import PostgresWriter

    cfg = ctx.cfg
    registrar = transport.open_writer()
    try:
        registrar.register_run(
            ctx.run_id,
            ctx.command,
            fp,
            report["source"],
            report["target"],
            cfg.redacted(),
            __version__,
        )
        # over REST the indexes stay: dropping them needs the owner's rights
        if isinstance(registrar, PostgresWriter) and defer and registrar.is_empty():
            deferred = defer_indexes(registrar.conn, cfg.target.schema, ctx.run_id)
            if deferred:
                ctx.log(
                    "info",
                    "initial load: building "
                    + ", ".join(d["name"] for d in deferred)
                    + " after the data",
                )
    finally:
        registrar.close()


def migrate_flow(ctx: RunContext, report: dict[str, Any], opts: MigrateOptions) -> ExitCode:
    from rbmigrate.encoder_pool import shared_encoder_pool
    from rbmigrate.engine.rejects import read_rejects
    from rbmigrate.engine.unchanged import save_reading, verify_unchanged
    from rbmigrate.engine.verify import run_verify
    from rbmigrate.target.postgres import PostgresStore

    cfg = ctx.cfg
    opened = _open(ctx, opts)
    session, transport, fp = opened.session, opened.transport, opened.fingerprint
    report["run_id"], report["run_dir"] = ctx.run_id, str(ctx.run_dir)
    store = session.store
    assert store is not None
    migration: Migration | None = None
    try:
        report["source"] = session.source.describe()
        refuse_problems(session)
        ensure_schema(ctx, session, report)
        report["target"] = store.describe()
        records = list(read_rejects(Path(opts.retry_rejects))) if opts.retry_rejects else None
        if records is not None:
            names = {r.collection for r in records}
            session.selected = [c for c in session.selected if c.name in names]
        elif not (opened.resumed or opts.deep):
            code = verify_unchanged(ctx, report, opts, opened)
            if code is not None:
                return code
        encoder = shared_encoder_pool(cfg)
        if isinstance(store, PostgresStore) and not store.has_task_embeddings():
            # an initial load encodes every task: the model loads while the source is scanned
            encoder.start()
        session.scan()
        migration = Migration(session, transport, ctx.run_id, encoder, records=records)
        register(ctx, report, transport, fp, defer=not opened.resumed)
        migration.start_fill()
        try:
            with ctx.phase("write", total=sum(c.count for c in session.selected)) as counter:
                migration.run(fp)
                counter[0] = sum(t.records for t in migration.tallies.values())
            after = migration.after_write(
                fp,
                with_deletes=cfg.migration.delete_missing and records is None,
                beside=None if opts.deep else verify_beside_encoder(migration, transport),
            )
        except Interrupted:
            _mark(transport, ctx.run_id, "interrupted")
            raise
        if after.beside is not None:
            ctx.log(
                "info",
                f"verified {after.beside.checked:,} memories and "
                f"{after.beside.traces['checked']:,} traces while the task encoder ran",
                code="verify_beside",
            )
        if after.deleted is not None:
            report["counts"]["deleted"] = after.deleted
        rejected = fill_counts(
            report, session, migration.tallies, migration.read_counts, after.parents_missing
        )
        report["counts"]["tasks_encoded"] = after.tasks_encoded
        c = report["counts"]
        if not (c["inserted"] or c["updated"] or c["traces_inserted"] or c["traces_updated"]):
            ctx.log("info", "nothing to write: the target already holds every record", code="no_op")
        migration.resilient(fp, lambda: migration.set_run(phase="verify", counts=report["counts"]))
        cache = migration.expected if migration.expected_complete() else None
        verify = migration.resilient(
            fp,
            lambda: run_verify(
                session,
                store,
                deep=opts.deep,
                reembed=cfg.migration.reembed_missing,
                expected=cache,
                content_ids=None if opts.deep else migration.written_ids(),
                trace_content_ids=(
                    None if opts.deep else migration.written_ids("reasoning_traces")
                ),
                beside=after.beside,
            ),
        )
        report["verify"] = verify.as_dict(strict_extra=cfg.migration.delete_missing)
        if opts.with_plan:
            report["plan"] = plan_from_run(session, migration.tallies, report)
        report["rejects_file"] = str(ctx.run_dir / "rejects.jsonl")
        code = verdict(ctx, report, verify, rejected)
        migration.resilient(
            fp,
            lambda: migration.set_run(
                status="ok" if code == ExitCode.OK else "failed",
                phase="done",
                counts=report["counts"],
                finished=True,
            ),
        )
        if code == ExitCode.OK and records is None and cache is not None:
            save_reading(session, migration.tallies, after.parents_missing)
        return code
    except RbmigrateError as exc:
        if not isinstance(exc, Interrupted | RunBusy):  # a busy run is another process's
            _mark(transport, ctx.run_id, "failed")
        raise
    finally:
        if migration is not None:
            if opts.rejects_path and (ctx.run_dir / "rejects.jsonl").exists():
                shutil.copyfile(ctx.run_dir / "rejects.jsonl", opts.rejects_path)
                report["rejects_copy"] = opts.rejects_path
            migration.close()
        session.close()


def verify_beside_encoder(
    migration: Migration, transport: Transport
) -> Callable[[], VerifyResult] | None:
    """The closing verify but the task embeddings, to run while the task encoder fills them,
    with a connection, a reading of the expected rows and a trace index of its own. None
    when this run's reading does not cover every accepted record."""
    from rbmigrate.engine.beside import lower_priority
    from rbmigrate.engine.expected import ExpectedRows
    from rbmigrate.engine.traceindex import TraceIndex
    from rbmigrate.engine.verify import RUN_READING, VerifyResult, verify_beside
    from rbmigrate.target.postgres import PostgresStore

    if not migration.expected_complete():
        return None
    session = migration.session
    # on this thread: the writer's connection
    content_ids = migration.written_ids()
    trace_content_ids = migration.written_ids("reasoning_traces")

    def work() -> VerifyResult:
        store = transport.open_store()
        if isinstance(store, PostgresStore) and store.resolved.kind == "embedded":
            row = store.conn.execute("SELECT pg_backend_pid()").fetchone()
            if row:
                lower_priority(int(row[0]))  # a backend of our own server, on this machine
        expected = ExpectedRows(migration.expected.path)
        index = TraceIndex(session.index.path)
        try:
            result = VerifyResult(source=RUN_READING)
            verify_beside(
                session,
                store,
                result,
                reembed=migration.cfg.migration.reembed_missing,
                expected=expected,
                index=index,
                content_ids=content_ids,
                trace_content_ids=trace_content_ids,
            )
            return result
        finally:
            index.close()
            expected.close()
            store.close()

    return work


def verdict(ctx: RunContext, report: dict[str, Any], verify: Any, rejected: int) -> ExitCode:
    code = ExitCode.OK
    if not report["verify"]["ok"]:
        code = ExitCode.VERIFY_FAILED
        ctx.log(
            "error",
            f"verification failed: {verify.missing} missing, {verify.mismatched} mismatched "
            "(see verify.samples in the report)",
        )
    max_rejects = ctx.cfg.migration.max_rejects
    if max_rejects >= 0 and rejected > max_rejects:
        code = ExitCode.VERIFY_FAILED
        ctx.log(
            "error",
            f"{rejected} records were rejected (max_rejects = {max_rejects}); they are in "
            f"{report['rejects_file']}",
        )
    return code


def _mark(transport: Transport, run_id: str, status: str) -> None:
    """Best effort: record how a run ended (the connection may be what failed)."""
    with contextlib.suppress(Exception):
        w = transport.open_writer()
        try:
            w.set_run(run_id, status=status)
        finally:
            w.close()
