"""The engine as the wizard calls it: one method per button, each returning an Outcome.

Screens never call `engine.api` directly; they ask the App to run a job, and the App calls
this facade in a worker thread. Tests pass a scripted subclass to get fixed reports (and
fixed timings) without a database.
"""

from __future__ import annotations

import copy
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rbmigrate.config import Config
from rbmigrate.engine import api
from rbmigrate.engine.api import Outcome
from rbmigrate.errors import ExitCode, InternalError, RbmigrateError
from rbmigrate.tui import adapters


def guarded(command: str, fn: Callable[[], dict[str, Any]]) -> Outcome:
    """Run a call that is not an engine command; its errors become a failed Outcome."""
    report: dict[str, Any] = {"command": command, "status": "ok", "error": None}
    try:
        report.update(fn())
        return Outcome(report, ExitCode.OK)
    except RbmigrateError as exc:
        error = exc
    except Exception as exc:  # a bug in an adapter: say so, never crash the screen
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        error = InternalError(
            f"unexpected {type(exc).__name__}: {first}",
            hint="this is a bug in the wizard; the headless commands are not affected.\n"
            + "".join(traceback.format_exception(exc))[-1500:],
        )
    report["status"] = "failed"
    report["error"] = error.as_dict()
    return Outcome(report, error.exit_code, error)


def keeping_snapshot(cfg: Config) -> Config:
    """A copy of cfg whose plan keeps its snapshot, so records can be inspected afterwards."""
    out = copy.deepcopy(cfg)
    out.migration.keep_snapshot = True
    return out


class Engine:
    """The real engine (engine.api plus the wizard's adapters)."""

    def scan(self, cfg: Config, **kw: Any) -> Outcome:
        return adapters.scan(cfg, **kw)

    def test_target(self, cfg: Config, **kw: Any) -> Outcome:
        return api.bootstrap(cfg, apply=False, **kw)

    def apply_schema(self, cfg: Config, **kw: Any) -> Outcome:
        return api.bootstrap(cfg, apply=True, **kw)

    def schema_sql(self, cfg: Config, **kw: Any) -> Outcome:
        return guarded("schema-sql", lambda: {"sql": api.schema_sql(cfg)})

    def plan(self, cfg: Config, **kw: Any) -> Outcome:
        return api.plan(keeping_snapshot(cfg), **kw)

    def migrate(self, cfg: Config, *, resume: str | None = None, **kw: Any) -> Outcome:
        return api.migrate(cfg, resume=resume, **kw)

    def compare(
        self,
        cfg: Config,
        *,
        query: str | None,
        k: int,
        parity: int | None,
        workspace: str | None,
        **kw: Any,
    ) -> Outcome:
        scoped = copy.deepcopy(cfg)
        scoped.source.workspaces = [workspace] if workspace else []
        return api.compare(scoped, query=query, k=k, parity=parity, **kw)

    def doctor(self, cfg: Config, **kw: Any) -> Outcome:
        return api.doctor(cfg, **kw)

    def inspect(self, cfg: Config, *, run_dir: str, source_id: str, **kw: Any) -> Outcome:
        return guarded(
            "inspect",
            lambda: {"record": adapters.inspect_record(cfg, Path(run_dir), source_id)},
        )

    def demo(self, cfg: Config, *, path: str, records: int, embeddings: str, **kw: Any) -> Outcome:
        from rbmigrate.demo import write_demo

        def body() -> dict[str, Any]:
            result = write_demo(Path(path), records, embeddings=embeddings)
            return {"demo": {"path": path, "records": result.records}}  # as the person sees it

        return guarded("demo", body)

    def discard_snapshot(self, run_dir: str) -> None:
        adapters.discard_snapshot(Path(run_dir))
