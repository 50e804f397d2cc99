"""The engine's front door: one function per command, each returning an Outcome.

Callers (CLI, TUI, tests) pass a config, an event sink and a cancel token; they get back the
report and the exit code. Errors become a failed report, never a traceback.
"""

from __future__ import annotations

import errno
import json
import sqlite3
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from rbmigrate.config import Config
from rbmigrate.engine.context import RunContext, private_file
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
        error = disk_full(exc, cfg.data_dir())
        if error is None:
            ctx.log("error", "".join(traceback.format_exception(exc)))
            text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
            error = InternalError(
                f"unexpected {type(exc).__name__}: {text}",
                hint=f"this is a bug; the traceback is in {ctx.run_dir / 'run.log'}. Nothing committed is lost.",
            )
    if error is not None:
        code = error.exit_code
        report["status"] = "interrupted" if isinstance(error, Interrupted) else "failed"
        report["error"] = {**error.as_dict(), "exit_code": int(error.exit_code)}
        ctx.log("error", str(error))
    elif code != ExitCode.OK:
        report["status"] = "failed"
    ctx.timings["total"] = round(ctx.clock() - started, 3)
    report["timings_s"] = dict(ctx.timings)
    # a run that adopted an earlier one and failed right after still names where it wrote
    report["run_id"], report["run_dir"] = ctx.run_id, str(ctx.run_dir)
    try:
        ctx.write_json("report.json", report)
    except OSError as exc:  # a full disk: the summary still reaches the screen
        ctx.log("warning", f"could not write {ctx.run_dir / 'report.json'}: {exc}")
    if report_path:
        with private_file(Path(report_path)) as fh:
            json.dump(report, fh, indent=2, default=str)
            fh.write("\n")
    ctx.sink.emit(RunFinished(report))
    ctx.close()
    return Outcome(report, ExitCode(code), error)


def disk_full(exc: BaseException, data_dir: Path) -> RbmigrateError | None:
    """No space left (an OSError, or SQLite's "database or disk is full" from the run's files)
    anywhere in the exception's chain: not a bug, say so and what to do."""
    seen: BaseException | None = exc
    while seen is not None:
        if (isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT)) or (
            isinstance(seen, sqlite3.OperationalError) and "disk is full" in str(seen)
        ):
            return RbmigrateError(
                f"no space left on the disk ({seen}); rbmigrate keeps the run's snapshot and "
                f"files in {data_dir}.",
                title="Disk full",
                hint="free some space there or set [run] data_dir (RBMIGRATE_DATA_DIR) to a larger "
                "disk, then run the same command again: a migration resumes from its last "
                "committed batch.",
            )
        seen = seen.__cause__ or seen.__context__
    return None


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
    if cfg.uses_rest():  # no database password: write the SQL to paste, check what is there
        from rbmigrate.engine.rest_ops import rest_bootstrap_body

        return rest_bootstrap_body(ctx, report)
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


def migrate(
    cfg: Config,
    *,
    resume: str | None = None,
    deep: bool = False,
    retry_rejects: str | None = None,
    rejects_path: str | None = None,
    **kw: Any,
) -> Outcome:
    from rbmigrate.engine.pipeline import MigrateOptions, migrate_flow

    opts = MigrateOptions(
        with_plan=False,
        resume=resume,
        deep=deep,
        retry_rejects=retry_rejects,
        rejects_path=rejects_path,
    )
    return run_command(cfg, "migrate", lambda c, r: migrate_flow(c, r, opts), **kw)


def pipeline(
    cfg: Config,
    *,
    resume: str | None = None,
    deep: bool = False,
    rejects_path: str | None = None,
    **kw: Any,
) -> Outcome:
    """bootstrap if needed -> plan -> migrate -> verify (the plan comes from the migration pass)."""
    from rbmigrate.engine.pipeline import MigrateOptions, migrate_flow

    opts = MigrateOptions(with_plan=True, resume=resume, deep=deep, rejects_path=rejects_path)
    return run_command(cfg, "headless", lambda c, r: migrate_flow(c, r, opts), **kw)


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
            session, session.store, deep=deep, reembed=ctx.cfg.migration.reembed_missing
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
    if cfg.uses_rest():
        from rbmigrate.engine.rest_ops import rest_rollback_body

        return rest_rollback_body(ctx, report, target_run)
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


# --- compare ----------------------------------------------------------------------------------


def compare(
    cfg: Config,
    *,
    query: str | None = None,
    k: int = 5,
    parity: int | None = None,
    exact: bool = False,
    domain: str | None = None,
    seed: int = 7,
    **kw: Any,
) -> Outcome:
    """One query on both sides (or a parity report over `parity` sampled memories)."""
    from rbmigrate.engine.compare_run import CompareOptions, compare_body

    opts = CompareOptions(query=query, k=k, parity=parity, exact=exact, domain=domain, seed=seed)
    return run_command(cfg, "compare", lambda c, r: compare_body(c, r, opts), **kw)


# --- doctor -----------------------------------------------------------------------------------


def doctor(cfg: Config, **kw: Any) -> Outcome:
    """Preflight: one ok / warn / fail line per thing a migration needs."""
    from rbmigrate.engine.doctor import doctor_body

    return run_command(cfg, "doctor", doctor_body, **kw)
