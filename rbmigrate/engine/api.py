"""The engine's front door: one function per command, each returning an Outcome.

Callers (CLI, TUI, tests) pass a config, an event sink and a cancel token; they get back the
report and the exit code. Errors become a failed report, never a traceback.
"""

from __future__ import annotations

import json
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from rbmigrate import __version__
from rbmigrate.config import Config
from rbmigrate.engine.context import RunContext, private_file
from rbmigrate.engine.migrate import Migration
from rbmigrate.engine.plan import plan_section, run_plan
from rbmigrate.engine.report import new_report, set_warnings
from rbmigrate.engine.session import Session
from rbmigrate.errors import (
    ExitCode,
    InternalError,
    Interrupted,
    RbmigrateError,
    SchemaError,
    SourceError,
    VerificationFailed,
)
from rbmigrate.events import (
    CallbackSink,
    EventSink,
    LogMessage,
    NullSink,
    RunControl,
    RunFinished,
    TeeSink,
)
from rbmigrate.source.peek import peek_dimensions
from rbmigrate.target.connection import connect, connection_error, resolve_target
from rbmigrate.target.schema import (
    DEFAULT_DIMENSION,
    apply_schema,
    incompatible_error,
    inspect_schema,
    render_schema,
)

Body = Callable[[RunContext, dict[str, Any]], ExitCode]


@dataclass
class Outcome:
    report: dict[str, Any]
    exit_code: ExitCode
    error: RbmigrateError | None = None


def run_command(
    cfg: Config,
    command: str,
    body: Body,
    *,
    sink: EventSink | None = None,
    control: RunControl | None = None,
    run_id: str | None = None,
    clock: Callable[[], float] | None = None,
    report_path: str | None = None,
) -> Outcome:
    messages: list[dict[str, Any]] = []

    def keep(event: Any) -> None:
        if isinstance(event, LogMessage) and (event.level != "info" or event.code):
            messages.append({"level": event.level, "code": event.code, "text": event.text[:2000]})

    fanout = TeeSink(sink or NullSink(), CallbackSink(keep))
    ctx = RunContext.create(cfg, command, sink=fanout, control=control, run_id=run_id, clock=clock)
    report = new_report(ctx)
    report["messages"] = messages
    started = ctx.clock()
    error: RbmigrateError | None = None
    try:
        code = body(ctx, report)
    except KeyboardInterrupt:
        error = Interrupted(
            "Interrupted; everything committed so far is kept.", hint=ctx.resume_hint()
        )
    except RbmigrateError as exc:
        error = exc
    except psycopg.OperationalError as exc:
        error = connection_error(exc, "the database")
    except Exception as exc:  # a bug: keep the traceback for the report, say where it is
        ctx.log("error", "".join(traceback.format_exception(exc)))
        text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        error = InternalError(
            f"unexpected {type(exc).__name__}: {text}",
            hint=f"this is a bug; the traceback is in {ctx.run_dir / 'run.log'}. Nothing committed is lost.",
        )
    if error is not None:
        code = error.exit_code
        report["status"] = "interrupted" if isinstance(error, Interrupted) else "failed"
        report["error"] = {
            "title": error.title,
            "message": error.message,
            "hint": error.hint,
            "exit_code": int(error.exit_code),
        }
        ctx.log("error", str(error))
    elif code != ExitCode.OK:
        report["status"] = "failed"
    ctx.timings["total"] = round(ctx.clock() - started, 3)
    report["timings_s"] = dict(ctx.timings)
    ctx.write_json("report.json", report)
    if report_path:
        with private_file(Path(report_path)) as fh:
            json.dump(report, fh, indent=2, default=str)
            fh.write("\n")
    ctx.sink.emit(RunFinished(report))
    ctx.close()
    return Outcome(report, ExitCode(code), error)


# --- plan -------------------------------------------------------------------------------


def plan_body(ctx: RunContext, report: dict[str, Any]) -> ExitCode:
    session = Session.open(ctx)
    try:
        report["source"] = session.source.describe()
        report["target"] = session.store.describe() if session.store else None
        result = run_plan(session)
        report["plan"] = plan_section(session, result)
        t = result.total()
        report["counts"].update(
            {
                "source_records": result.source_records,
                "inserted": t.new,
                "updated": t.changed,
                "unchanged": t.unchanged,
                "rejected": t.invalid,
                "skipped": t.skipped,
                "traces_inserted": result.traces.get("new", 0),
                "traces_updated": result.traces.get("changed", 0),
            }
        )
        report["counts"]["dry_run"] = True
        report["rejects_by_code"] = {k: v["count"] for k, v in sorted(result.invalid.items())}
        set_warnings(report, result.warnings)
        return verdict(session, t.invalid, ctx.cfg.migration.max_rejects)
    finally:
        session.close()


def verdict(session: Session, rejected: int, max_rejects: int) -> ExitCode:
    """Refused collections and too many rejects decide the exit code after the report is full."""
    for p in session.problems:
        if p.refused and p.code == "collection_dimension_mismatch":
            raise SchemaError(
                f"{p.message}.",
                title="Dimension mismatch",
                hint="migrate that collection into another schema (--schema / [target] schema), "
                "or deselect it with --collection.",
            )
        if p.refused:
            raise SourceError(
                f"{p.message}.",
                title="Collection refused",
                hint="deselect it: name the collections to migrate with --collection.",
            )
    if session.schema is not None and session.schema.problems:
        raise incompatible_error(session.schema)
    if max_rejects >= 0 and rejected > max_rejects:
        raise VerificationFailed(
            f"{rejected} records are invalid and would be rejected (max_rejects = {max_rejects}).",
            title="Too many rejects",
            hint="see invalid_by_code in the report; fix them at the source, map outcomes with "
            "[migration] outcome_map, or raise max_rejects to accept them.",
        )
    return ExitCode.OK


def plan(cfg: Config, **kw: Any) -> Outcome:
    return run_command(cfg, "plan", plan_body, **kw)


# --- bootstrap ----------------------------------------------------------------------------


def bootstrap_dimension(cfg: Config, existing: int | None = None) -> int:
    """Configured, else the source's (most common), else what the target has, else 384."""
    if cfg.target.dimension:
        return cfg.target.dimension
    dims = Counter(d for d in peek_dimensions(cfg).values() if d)
    if dims:
        return dims.most_common(1)[0][0]
    return existing or DEFAULT_DIMENSION


def bootstrap_body(ctx: RunContext, report: dict[str, Any], *, apply: bool = True) -> ExitCode:
    cfg = ctx.cfg
    resolved = resolve_target(cfg)
    try:
        with ctx.phase("bootstrap", unit="steps"), connect(resolved.dsn, autocommit=True) as conn:
            existing = inspect_schema(conn, cfg.target.schema, DEFAULT_DIMENSION).existing_dimension
            dimension = bootstrap_dimension(cfg, existing)
            before = inspect_schema(conn, cfg.target.schema, dimension)
            report["target"] = {
                "transport": "postgres",
                "kind": resolved.kind,
                "location": resolved.shown(),
                "server_version": before.server_version,
                "pgvector_version": before.pgvector_version,
                "is_supabase": before.is_supabase,
            }
            section: dict[str, Any] = {
                "before": before.as_dict(),
                "dimension": dimension,
                "applied": False,
            }
            report["schema"] = section
            if before.problems:
                raise incompatible_error(before)
            if apply and before.missing:
                ctx.log("info", f"creating {len(before.missing)} schema objects")
                after = apply_schema(conn, cfg.target.schema, dimension)
                section.update({"after": after.as_dict(), "applied": True})
                report["target"]["pgvector_version"] = after.pgvector_version
            else:
                section["after"] = before.as_dict()
    finally:
        resolved.close()
    return ExitCode.OK


def bootstrap(cfg: Config, *, apply: bool = True, **kw: Any) -> Outcome:
    return run_command(cfg, "bootstrap", lambda c, r: bootstrap_body(c, r, apply=apply), **kw)


def schema_sql(cfg: Config) -> str:
    return render_schema(bootstrap_dimension(cfg), cfg.target.schema)


# --- migrate, and the headless pipeline -----------------------------------------------------


def ensure_schema(ctx: RunContext, session: Session, report: dict[str, Any]) -> None:
    """Bootstrap the target when its schema is missing or partial; refuse when incompatible."""
    status = session.schema
    if status is None or session.store is None:
        return
    if status.problems:
        raise incompatible_error(status)
    if status.missing:
        with ctx.phase("bootstrap", unit="objects") as done:
            ctx.log(
                "info", f"creating {len(status.missing)} schema objects in {ctx.cfg.target.schema}"
            )
            after = apply_schema(session.store.conn, ctx.cfg.target.schema, session.dimension)
            done[0] = len(status.missing)
        report["schema"] = {
            "before": status.as_dict(),
            "after": after.as_dict(),
            "dimension": session.dimension,
            "applied": True,
        }
        session.store.refresh_types()
        session.schema = session.store.schema_status(session.dimension)


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
    report: dict[str, Any], session: Session, migration: Migration, parents_missing: int
) -> int:
    totals: Counter[str] = Counter()
    warnings: Counter[str] = Counter(session.trace_warnings)
    rejects: Counter[str] = Counter()
    for tally in migration.tallies.values():
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
            read = migration.read_counts.get(coll.name, 0)
            if read and read != coll.count:
                ctx = session.ctx
                ctx.log(
                    "warning",
                    f"{coll.name} had {coll.count} records at the start and {read} were "
                    "read: the server was written to during the run",
                    code="source_changed",
                )
    return totals["rejected"]


def migrate_flow(
    ctx: RunContext,
    report: dict[str, Any],
    *,
    with_plan: bool,
    resume: str | None = None,
    deep: bool = False,
    retry_rejects: str | None = None,
) -> ExitCode:
    from rbmigrate.embeddings import shared_embedder
    from rbmigrate.engine.migrate import Migration
    from rbmigrate.engine.rejects import read_rejects
    from rbmigrate.engine.runs import choose_run, fingerprint
    from rbmigrate.engine.verify import run_verify
    from rbmigrate.target.indexes import defer_indexes
    from rbmigrate.target.postgres import PostgresStore

    cfg = ctx.cfg
    with ctx.phase("connect", unit="steps"):
        resolved = resolve_target(cfg)
        try:
            store = PostgresStore(resolved, cfg.target.schema)
        except BaseException:
            resolved.close()
            raise
    fp = fingerprint(cfg)
    if retry_rejects is None:
        choice = choose_run(store.conn, cfg.target.schema, fp, resume)
        if choice.message:
            ctx.log("info", choice.message, code="resume")
        if choice.run_id:
            ctx.adopt(choice.run_id)
            report["run_id"], report["run_dir"] = ctx.run_id, str(ctx.run_dir)
        resumed = choice.resumed
    else:
        resumed = False
    session = Session.open(ctx, store=store, resolved=resolved)
    migration: Migration | None = None
    try:
        report["source"] = session.source.describe()
        report["target"] = store.describe()
        refuse_problems(session)
        ensure_schema(ctx, session, report)
        report["target"] = store.describe()
        records = list(read_rejects(Path(retry_rejects))) if retry_rejects else None
        if records is not None:
            names = {r.collection for r in records}
            session.selected = [c for c in session.selected if c.name in names]
        if with_plan:
            result = run_plan(session)
            report["plan"] = plan_section(session, result)
        else:
            session.scan()
        embedder = shared_embedder(cfg)
        embedder.check_dimension(session.dimension, "the target")
        migration = Migration(session, resolved, ctx.run_id, embedder, records=records)
        from rbmigrate.target.writer import PostgresWriter

        registrar = PostgresWriter(resolved.dsn, cfg.target.schema)
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
            if not resumed and registrar.is_empty():
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
        try:
            with ctx.phase("write", total=sum(c.count for c in session.selected)) as counter:
                migration.run(fp)
                counter[0] = sum(t.records for t in migration.tallies.values())
        except Interrupted:
            _mark(resolved.dsn, cfg.target.schema, ctx.run_id, "interrupted")
            raise
        after = migration.after_write(
            fp, with_deletes=cfg.migration.delete_missing and records is None
        )
        if after.deleted is not None:
            report["counts"]["deleted"] = after.deleted
        rejected = fill_counts(report, session, migration, after.parents_missing)
        c = report["counts"]
        if not (c["inserted"] or c["updated"] or c["traces_inserted"] or c["traces_updated"]):
            ctx.log("info", "nothing to write: the target already holds every record", code="no_op")
        if migration.tasks is not None:
            report["counts"]["tasks_encoded"] = migration.tasks.encoded
        migration.resilient(fp, lambda: migration.set_run(phase="verify", counts=report["counts"]))
        verify = migration.resilient(
            fp,
            lambda: run_verify(
                session, store.conn, deep=deep, reembed=cfg.migration.reembed_missing
            ),
        )
        report["verify"] = verify.as_dict(strict_extra=cfg.migration.delete_missing)
        report["rejects_file"] = str(ctx.run_dir / "rejects.jsonl")
        code = ExitCode.OK
        if not report["verify"]["ok"]:
            code = ExitCode.VERIFY_FAILED
            ctx.log(
                "error",
                f"verification failed: {verify.missing} missing, {verify.mismatched} mismatched "
                f"(see verify.samples in the report)",
            )
        max_rejects = cfg.migration.max_rejects
        if max_rejects >= 0 and rejected > max_rejects:
            code = ExitCode.VERIFY_FAILED
            ctx.log(
                "error",
                f"{rejected} records were rejected (max_rejects = {max_rejects}); "
                f"they are in {report['rejects_file']}",
            )
        migration.resilient(
            fp,
            lambda: migration.set_run(
                status="ok" if code == ExitCode.OK else "failed",
                phase="done",
                counts=report["counts"],
                finished=True,
            ),
        )
        return code
    except RbmigrateError as exc:
        if not isinstance(exc, Interrupted):
            _mark(resolved.dsn, cfg.target.schema, ctx.run_id, "failed")
        raise
    finally:
        if migration is not None:
            _copy_rejects(ctx, report)
            migration.close()
        session.close()


def _mark(dsn: str, schema: str, run_id: str, status: str) -> None:
    """Best effort: record how a run ended (the connection may be what failed)."""
    import contextlib

    from rbmigrate.target.writer import PostgresWriter

    with contextlib.suppress(Exception):
        w = PostgresWriter(dsn, schema)
        w.set_run(run_id, status=status)
        w.close()


def _copy_rejects(ctx: RunContext, report: dict[str, Any]) -> None:
    target = getattr(ctx, "rejects_copy", None)
    if target and (ctx.run_dir / "rejects.jsonl").exists():
        import shutil

        shutil.copyfile(ctx.run_dir / "rejects.jsonl", target)
        report["rejects_copy"] = str(target)


def migrate(
    cfg: Config,
    *,
    resume: str | None = None,
    deep: bool = False,
    retry_rejects: str | None = None,
    rejects_path: str | None = None,
    **kw: Any,
) -> Outcome:
    def body(ctx: RunContext, report: dict[str, Any]) -> ExitCode:
        ctx.rejects_copy = rejects_path  # type: ignore[attr-defined]
        return migrate_flow(
            ctx, report, with_plan=False, resume=resume, deep=deep, retry_rejects=retry_rejects
        )

    return run_command(cfg, "migrate", body, **kw)


def pipeline(
    cfg: Config,
    *,
    resume: str | None = None,
    deep: bool = False,
    rejects_path: str | None = None,
    **kw: Any,
) -> Outcome:
    def body(ctx: RunContext, report: dict[str, Any]) -> ExitCode:
        ctx.rejects_copy = rejects_path  # type: ignore[attr-defined]
        return migrate_flow(ctx, report, with_plan=True, resume=resume, deep=deep)

    return run_command(cfg, "headless", body, **kw)


# --- verify and rollback ----------------------------------------------------------------------


def verify_body(ctx: RunContext, report: dict[str, Any], *, deep: bool) -> ExitCode:
    from rbmigrate.engine.verify import run_verify

    session = Session.open(ctx)
    try:
        report["source"] = session.source.describe()
        report["target"] = session.store.describe() if session.store else None
        if session.schema is None or session.schema.state() == "missing":
            raise SchemaError(
                "the target has no ReasoningBank tables to verify.",
                hint="run rbmigrate --headless migrate first.",
            )
        assert session.store is not None
        result = run_verify(
            session, session.store.conn, deep=deep, reembed=ctx.cfg.migration.reembed_missing
        )
        report["verify"] = result.as_dict(strict_extra=ctx.cfg.migration.delete_missing)
        report["counts"]["source_records"] = sum(c.count for c in session.source.collections())
        if not report["verify"]["ok"]:
            raise VerificationFailed(
                f"the target differs from the source: {result.missing} missing, {result.mismatched} "
                f"mismatched, {result.vector_mismatches} vector mismatches, "
                f"{result.traces['missing']} traces missing.",
                hint="see verify.samples in the report; rbmigrate --headless migrate repairs it.",
            )
        return ExitCode.OK
    finally:
        session.close()


def verify(cfg: Config, *, deep: bool = False, **kw: Any) -> Outcome:
    return run_command(cfg, "verify", lambda c, r: verify_body(c, r, deep=deep), **kw)


def rollback_body(ctx: RunContext, report: dict[str, Any], target_run: str) -> ExitCode:
    from rbmigrate.engine.rollback import rollback as do_rollback

    cfg = ctx.cfg
    resolved = resolve_target(cfg)
    try:
        with (
            ctx.phase("rollback", unit="rows"),
            connect(resolved.dsn, schema=cfg.target.schema) as conn,
        ):
            report["target"] = {
                "transport": "postgres",
                "kind": resolved.kind,
                "location": resolved.shown(),
            }
            result = do_rollback(conn, cfg.target.schema, target_run)
            report["rollback"] = {"run_id": target_run, **result.as_dict()}
    finally:
        resolved.close()
    return ExitCode.OK


def rollback(cfg: Config, target_run: str, **kw: Any) -> Outcome:
    """Undo the run `target_run` (this rollback is itself a run with its own id and report)."""
    return run_command(cfg, "rollback", lambda c, r: rollback_body(c, r, target_run), **kw)
