"""`rbmigrate`: the wizard by default, or headless commands that print and exit with a code."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console

from rbmigrate import __version__
from rbmigrate.cli.args import build_parser, overrides
from rbmigrate.cli.render import PlainRenderer, RichRenderer, print_error, print_summary
from rbmigrate.config import Config, load, secret_variables, starter_toml, write_private
from rbmigrate.errors import ConfigError, ExitCode, RbmigrateError
from rbmigrate.events import EventSink, RunControl


def _install_stop_handlers(control: RunControl) -> None:
    """First Ctrl+C / SIGTERM: stop between batches. A second Ctrl+C: stop now."""

    def handler(signum: int, frame: FrameType | None) -> None:
        if control.cancel.is_set():
            raise KeyboardInterrupt
        control.request_cancel()
        print("\nstopping after the current batch… (Ctrl+C again to stop at once)", file=sys.stderr)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def _sink(ns: argparse.Namespace) -> tuple[EventSink, Any]:
    stream = sys.stderr
    if stream.isatty() and not getattr(ns, "json", False):
        renderer: Any = RichRenderer(Console(file=stream))
    else:
        renderer = PlainRenderer(stream, quiet=bool(getattr(ns, "json", False)))
    return renderer, renderer


def _finish(outcome: Any, ns: argparse.Namespace) -> int:
    if getattr(ns, "json", False):
        print(json.dumps(outcome.report, indent=2, default=str))
    else:
        width = None if sys.stdout.isatty() else 120
        print_summary(outcome.report, Console(width=width, soft_wrap=True))
    if outcome.error is not None:
        print_error(outcome.error)
    return int(outcome.exit_code)


def _engine_call(ns: argparse.Namespace, cfg: Config, fn: Any, **kw: Any) -> int:
    control = RunControl()
    _install_stop_handlers(control)
    sink, renderer = _sink(ns)
    try:
        outcome = fn(
            cfg,
            sink=sink,
            control=control,
            run_id=getattr(ns, "run_id", None),
            report_path=getattr(ns, "report", None),
            **kw,
        )
    finally:
        renderer.close()
    return _finish(outcome, ns)


def cmd_init(ns: argparse.Namespace, cfg: Config) -> int:
    path = Path(getattr(ns, "config", None) or "rbmigrate.toml")
    if cfg.path and Path(cfg.path).resolve() == path.resolve() and not getattr(ns, "force", False):
        raise ConfigError(f"{path} already exists.", hint="pass --force to replace it.")
    if not cfg.source.chroma_path and not cfg.source.chroma_url and Path("chroma_data").is_dir():
        cfg.source.chroma_path = "./chroma_data"
    write_private(path, starter_toml(cfg), overwrite=bool(getattr(ns, "force", False)))
    print(f"wrote {path} (mode 0600)")
    for name in secret_variables(cfg):
        print(f"  set {name} in your environment; the file refers to it as env:{name}")
    return int(ExitCode.OK)


def cmd_demo(ns: argparse.Namespace, cfg: Config) -> int:
    from rbmigrate.demo import write_demo

    path = Path(cfg.source.chroma_path or "chroma_data")
    records = getattr(ns, "records", None) or 500
    console = Console(file=sys.stderr)
    console.print(f"writing a demo store with {records} records to {path} …", highlight=False)

    def progress(done: int, total: int) -> None:
        console.print(f"  {done}/{total} records", highlight=False)

    result = write_demo(
        path,
        records,
        seed=getattr(ns, "seed", None) or 7,
        embeddings=getattr(ns, "embeddings", None) or "real",
        space=getattr(ns, "space", None) or "l2",
        force=bool(getattr(ns, "force", False)),
        progress=progress,
    )
    summary = {
        "path": str(result.path),
        "records": result.records,
        "traces": result.traces,
        "seconds": round(result.seconds, 1),
    }
    if getattr(ns, "json", False):
        print(json.dumps(summary))
    else:
        print(
            f"demo store: {result.path} — {result.records} memories in {result.traces} traces "
            f"({result.seconds:.1f}s)"
        )
        print(f"next: rbmigrate --headless --chroma-path {result.path}")
    return int(ExitCode.OK)


def cmd_bootstrap(ns: argparse.Namespace, cfg: Config) -> int:
    from rbmigrate.engine import api

    if getattr(ns, "print_sql", False):
        sys.stdout.write(api.schema_sql(cfg))
        return int(ExitCode.OK)
    return _engine_call(ns, cfg, api.bootstrap, apply=not getattr(ns, "check", False))


def cmd_plan(ns: argparse.Namespace, cfg: Config) -> int:
    from rbmigrate.engine import api

    return _engine_call(ns, cfg, api.plan)


def cmd_pipeline(ns: argparse.Namespace, cfg: Config) -> int:
    from rbmigrate.engine import api

    return _engine_call(
        ns,
        cfg,
        api.pipeline,
        resume=getattr(ns, "resume", None),
        deep=bool(getattr(ns, "deep", False)),
        rejects_path=getattr(ns, "rejects", None),
    )


def cmd_migrate(ns: argparse.Namespace, cfg: Config) -> int:
    from rbmigrate.engine import api

    return _engine_call(
        ns,
        cfg,
        api.migrate,
        resume=getattr(ns, "resume", None),
        deep=bool(getattr(ns, "deep", False)),
        rejects_path=getattr(ns, "rejects", None),
        retry_rejects=getattr(ns, "retry_rejects", None),
    )


def cmd_verify(ns: argparse.Namespace, cfg: Config) -> int:
    from rbmigrate.engine import api

    return _engine_call(ns, cfg, api.verify, deep=bool(getattr(ns, "deep", False)))


def cmd_rollback(ns: argparse.Namespace, cfg: Config) -> int:
    from rbmigrate.engine import api

    return _engine_call(ns, cfg, api.rollback, target_run=ns.target_run)


def cmd_compare(ns: argparse.Namespace, cfg: Config) -> int:
    from rbmigrate.cli.compare_view import print_compare, print_parity
    from rbmigrate.engine import api

    control = RunControl()
    _install_stop_handlers(control)
    sink, renderer = _sink(ns)
    try:
        outcome = api.compare(
            cfg,
            query=getattr(ns, "query", None),
            k=5 if getattr(ns, "top_k", None) is None else ns.top_k,
            parity=getattr(ns, "parity", None),
            exact=bool(getattr(ns, "exact", False)),
            domain=getattr(ns, "domain", None),
            seed=getattr(ns, "seed", None) or 7,
            sink=sink,
            control=control,
            run_id=getattr(ns, "run_id", None),
            report_path=getattr(ns, "report", None),
        )
    finally:
        renderer.close()
    result = outcome.report.get("compare")
    if result is None:
        return _finish(outcome, ns)
    if getattr(ns, "json", False):
        print(json.dumps(result, indent=2, default=str))
    else:
        width = None if sys.stdout.isatty() else 140
        console = Console(width=width, soft_wrap=True)
        (print_parity if "by_workspace" in result else print_compare)(result, console)
    if outcome.error is not None:
        print_error(outcome.error)
    return int(outcome.exit_code)


def cmd_doctor(ns: argparse.Namespace, cfg: Config) -> int:
    from rbmigrate.engine import api

    sink, renderer = _sink(ns)
    try:
        outcome = api.doctor(
            cfg,
            sink=sink,
            run_id=getattr(ns, "run_id", None),
            report_path=getattr(ns, "report", None),
        )
    finally:
        renderer.close()
    result = outcome.report.get("doctor")
    if result is None:
        return _finish(outcome, ns)
    if getattr(ns, "json", False):
        print(json.dumps(result, indent=2))
    else:
        marks = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL", "skip": "skip"}
        for check in result["checks"]:
            print(f"{marks[check['status']]}  {check['name']}: {check['detail']}")
            if check["advice"] and check["status"] != "ok":
                print(f"      → {check['advice']}")
        print(
            "doctor: "
            + ("ready to migrate" if result["ok"] else f"{len(result['failed'])} check(s) failed")
        )
    return int(outcome.exit_code)


def cmd_wizard(ns: argparse.Namespace, cfg: Config) -> int:
    try:
        from rbmigrate.tui.app import run_wizard  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        print(
            "the full-screen wizard is not part of this build; use rbmigrate --headless "
            "(see rbmigrate --help)",
            file=sys.stderr,
        )
        return int(ExitCode.USAGE)
    return int(run_wizard(cfg))


HANDLERS = {
    "init": cmd_init,
    "demo": cmd_demo,
    "bootstrap": cmd_bootstrap,
    "plan": cmd_plan,
    "migrate": cmd_migrate,
    "verify": cmd_verify,
    "rollback": cmd_rollback,
    "compare": cmd_compare,
    "doctor": cmd_doctor,
}


def main(argv: list[str] | None = None) -> int:
    os.umask(0o077)  # reports, rejects, snapshots and configs hold user data: owner only
    parser = build_parser()
    ns = parser.parse_args(argv)
    if ns.version:
        print(f"rbmigrate {__version__}")
        return 0
    try:
        cfg = load(getattr(ns, "config", None), overrides=overrides(ns))
        command = ns.command
        if command is None:
            return cmd_pipeline(ns, cfg) if getattr(ns, "headless", False) else cmd_wizard(ns, cfg)
        handler = HANDLERS.get(command)
        if handler is None:
            raise ConfigError(f"the {command} command is not available in this build yet.")
        return handler(ns, cfg)
    except RbmigrateError as exc:
        print_error(exc)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)
