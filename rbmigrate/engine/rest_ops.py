"""bootstrap and rollback over REST, where there is no database connection to run them on.

Without a database password rbmigrate cannot create the schema: `bootstrap` writes the SQL
for the Supabase SQL editor and checks, over REST, that what is there matches it (exit 4
with the file to paste while it does not). Rollback needs its change log written in the same
transaction as the changes; over REST `rbmigrate_merge_batch` does exactly that, so
`rbmigrate_rollback_run` can undo a run as the direct rollback does.
"""

from __future__ import annotations

from typing import Any

from rbmigrate.engine.context import RunContext
from rbmigrate.engine.pipeline import rest_schema_missing
from rbmigrate.engine.rollback import RollbackRefused
from rbmigrate.engine.session import retry_logger
from rbmigrate.errors import ConfigError, ExitCode
from rbmigrate.target.rest import rest_settings
from rbmigrate.target.rest_errors import RestRequestError
from rbmigrate.target.rest_store import RestTransport
from rbmigrate.target.schema import DEFAULT_DIMENSION, incompatible_error


def _transport(ctx: RunContext) -> RestTransport:
    return RestTransport(
        rest_settings(ctx.cfg), cancel=ctx.control.cancel, on_retry=retry_logger(ctx)
    )


def rest_bootstrap_body(ctx: RunContext, report: dict[str, Any]) -> ExitCode:
    from rbmigrate.engine.api import bootstrap_dimension

    store = _transport(ctx).open_store()
    try:
        with ctx.phase("bootstrap", unit="steps"):
            existing = store.schema_status(DEFAULT_DIMENSION).existing_dimension
            dimension = bootstrap_dimension(ctx.cfg, existing)
            before = store.schema_status(dimension)
            report["target"] = {**store.describe(), "is_supabase": before.is_supabase}
            report["schema"] = {
                "before": before.as_dict(),
                "after": before.as_dict(),
                "dimension": dimension,
                "applied": False,
            }
            if before.problems:
                raise incompatible_error(before)
            if before.missing:
                raise rest_schema_missing(ctx, before, dimension)
            ctx.log("info", f"the schema at {store.client.url} is complete ({dimension}-d)")
    finally:
        store.close()
    return ExitCode.OK


def rest_rollback_body(ctx: RunContext, report: dict[str, Any], target_run: str) -> ExitCode:
    transport = _transport(ctx)
    client = transport.client()
    try:
        with ctx.phase("rollback", unit="rows"):
            report["target"] = {
                "transport": "rest",
                "kind": "supabase",
                "location": client.url,
            }
            try:
                result = client.rpc(
                    "rbmigrate_rollback_run", {"p_run_id": target_run}, "roll back the run"
                )
            except RestRequestError as exc:
                problem = exc.problem
                if problem.code == "RBM03":
                    raise ConfigError(
                        f"{problem.message}.",
                        hint="the run id is in the report and in rbmigrate_runs.",
                    ) from None
                if problem.code == "RBM04":
                    raise RollbackRefused(
                        f"{problem.message}.",
                        hint="roll back the later runs first (newest first), or restore from a "
                        "backup.",
                    ) from None
                if problem.code == "RBM05":
                    raise RollbackRefused(f"{problem.message}.") from None
                raise
            report["rollback"] = {"run_id": target_run, **dict(result or {})}
    finally:
        client.close()
    return ExitCode.OK
