"""Headless output: rich progress on a terminal, plain lines in CI, a summary at the end."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from rbmigrate.errors import RbmigrateError
from rbmigrate.events import (
    Event,
    LogMessage,
    PhaseFinished,
    PhaseStarted,
)
from rbmigrate.events import (
    Progress as ProgressEvent,
)


class PlainRenderer:
    """One line per phase and a progress line every few seconds: readable in CI logs."""

    def __init__(self, stream: TextIO, quiet: bool = False, every: float = 5.0) -> None:
        self.stream = stream
        self.quiet = quiet
        self.every = every
        self._last: dict[str, float] = {}

    def emit(self, event: Event) -> None:
        if isinstance(event, LogMessage) and (event.level != "info" or not self.quiet):
            print(f"[{event.level}] {event.text}", file=self.stream, flush=True)
        if self.quiet:
            return
        if isinstance(event, PhaseStarted):
            total = f" ({event.total} {event.unit})" if event.total else ""
            print(f"-> {event.phase}{total}", file=self.stream, flush=True)
        elif isinstance(event, ProgressEvent):
            now = time.monotonic()
            if now - self._last.get(event.phase, 0.0) >= self.every:
                self._last[event.phase] = now
                total = f"/{event.total}" if event.total else ""
                print(
                    f"   {event.phase}: {event.done}{total} {event.unit}",
                    file=self.stream,
                    flush=True,
                )
        elif isinstance(event, PhaseFinished):
            print(
                f"   {event.phase} done: {event.done} in {event.elapsed_s:.1f}s",
                file=self.stream,
                flush=True,
            )

    def close(self) -> None:
        return None


class RichRenderer:
    """Live bars per phase with rate and ETA; rich repaints at most 10 times a second."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("[bold]{task.description:<10}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            refresh_per_second=10,
            transient=False,
        )
        self.tasks: dict[str, TaskID] = {}
        self.started: dict[str, float] = {}
        self.progress.start()

    def emit(self, event: Event) -> None:
        if isinstance(event, PhaseStarted):
            self.started[event.phase] = time.monotonic()
            self.tasks[event.phase] = self.progress.add_task(
                event.phase, total=event.total, rate=""
            )
        elif isinstance(event, ProgressEvent) and event.phase in self.tasks:
            elapsed = max(time.monotonic() - self.started.get(event.phase, time.monotonic()), 1e-6)
            self.progress.update(
                self.tasks[event.phase],
                completed=event.done,
                total=event.total,
                rate=f"{event.done / elapsed:,.0f} {event.unit}/s",
            )
        elif isinstance(event, PhaseFinished) and event.phase in self.tasks:
            task = self.tasks[event.phase]
            total = self.progress.tasks[self.tasks[event.phase]].total
            self.progress.update(
                task, completed=total if total else event.done, total=total or event.done or 1
            )
        elif isinstance(event, LogMessage) and event.level != "info":
            style = "yellow" if event.level == "warning" else "red"
            self.console.print(f"[{style}]{event.level}:[/] {escape(event.text)}", highlight=False)

    def close(self) -> None:
        self.progress.stop()


def print_error(error: RbmigrateError, stream: TextIO = sys.stderr) -> None:
    console = Console(file=stream, highlight=False, soft_wrap=True)
    console.print(f"[bold red]{escape(error.title)}:[/] {escape(error.message)}")
    if error.hint:
        console.print(f"  [dim]→[/] {escape(error.hint)}")


def _counts_table(report: dict[str, Any]) -> Table:
    c = report["counts"]
    title = "What the migration would do (dry run)" if c.get("dry_run") else "Records"
    table = Table(title=title, title_justify="left")
    for col in ("source", "inserted", "updated", "unchanged", "rejected", "skipped", "warnings"):
        table.add_column(col, justify="right")
    table.add_row(
        *(
            str(c[k])
            for k in (
                "source_records",
                "inserted",
                "updated",
                "unchanged",
                "rejected",
                "skipped",
                "warnings",
            )
        )
    )
    return table


def _plan_table(plan: dict[str, Any]) -> Table:
    table = Table(title="Plan by collection and workspace", title_justify="left")
    for col in (
        "collection",
        "workspace",
        "new",
        "changed",
        "unchanged",
        "target-only",
        "invalid",
        "skipped",
    ):
        table.add_column(col, justify="left" if col in ("collection", "workspace") else "right")
    for row in plan["by_collection"]:
        table.add_row(
            row["collection"],
            row["workspace"] or "—",
            *(
                str(row[k])
                for k in ("new", "changed", "unchanged", "target_only", "invalid", "skipped")
            ),
        )
    return table


def print_summary(report: dict[str, Any], console: Console) -> None:
    """Human summary of a report. Dynamic text is printed without markup: store names,
    paths and formats may contain square brackets."""
    src = report.get("source") or {}
    tgt = report.get("target") or {}
    if src:
        fmt = f" [{src.get('chroma_format')}]" if src.get("chroma_format") else ""
        console.print(
            f"source: {src.get('kind')} {src.get('location')}{fmt}", highlight=False, markup=False
        )
        for c in src.get("collections", []):
            console.print(
                f"  {c['name']}: {c['count']} records, dim {c['dimension']}, {c['space']}, "
                f"{c['layout']}",
                highlight=False,
                markup=False,
            )
    if tgt:
        versions = (
            f" — PostgreSQL {tgt.get('server_version')}, pgvector "
            f"{tgt.get('pgvector_version') or 'not installed'}"
            if tgt.get("server_version")
            else ""
        )
        console.print(
            f"target: {tgt.get('transport')} {tgt.get('location', '')}{versions}",
            highlight=False,
            markup=False,
        )
    schema = report.get("schema")
    if schema:
        before, after = schema.get("before", {}), schema.get("after", {})
        console.print(
            f"schema {before.get('schema')}: was {before.get('state')}, now {after.get('state')}"
            f" (vector({schema.get('dimension')}))",
            highlight=False,
            markup=False,
        )
        if schema.get("applied"):
            console.print(
                f"  created {len(before.get('missing', []))} objects", highlight=False, markup=False
            )
        for item in after.get("missing", [])[:20]:
            console.print(f"  missing: {item}", highlight=False, markup=False)
    plan = report.get("plan")
    if plan:
        console.print(_plan_table(plan))
        for p in plan.get("collection_problems", []):
            console.print(
                f"{p['code']}: {p['message']}", style="yellow", highlight=False, markup=False
            )
        sch = plan.get("schema") or {}
        if sch:
            console.print(
                f"target schema: {sch.get('state')}"
                + (
                    f" — {len(sch.get('missing', []))} objects to create"
                    if sch.get("missing")
                    else ""
                ),
                highlight=False,
                markup=False,
            )
        est = plan.get("estimate_s", {})
        if est:
            console.print(
                f"estimated migration time: {est.get('total', 0):.0f}s",
                highlight=False,
                markup=False,
            )
        size = (plan.get("estimate") or {}).get("bytes")
        if size:
            from rbmigrate.engine.estimate import human_bytes

            console.print(
                f"estimated target size: {human_bytes(size['total'])} (HNSW indexes "
                f"{human_bytes(size['hnsw_indexes'])}; halfvec would save "
                f"{human_bytes(plan['estimate']['halfvec_saves_bytes'])})",
                highlight=False,
                markup=False,
            )
    ver = report.get("verify")
    if ver:
        state = "OK" if ver["ok"] else "FAILED"
        console.print(
            f"verify: {state} — {ver['checked']} checked, {ver['missing']} missing, {ver['mismatched']} "
            f"mismatched, {ver['extra']} extra in the target"
            + (
                f", {ver['vectors_compared']} vectors compared element by element"
                if ver.get("deep")
                else ""
            )
            + f"; traces {ver['traces']['checked']} checked, {ver['traces']['missing']} missing",
            style="green" if ver["ok"] else "red",
            highlight=False,
            markup=False,
        )
    undo = report.get("rollback")
    if undo:

        def rows(key: str) -> str:
            got = undo.get(key, {})
            return (
                f"{got.get('memory_items', 0)} memories and {got.get('reasoning_traces', 0)} traces"
            )

        console.print(
            f"rollback of {undo['run_id']}: removed {rows('deleted')}; restored {rows('restored')}; "
            f"re-inserted {rows('reinserted')}",
            style="green",
            highlight=False,
            markup=False,
        )
    ran = report.get("status") != "failed" or report["counts"].get("source_records")
    if report.get("command") not in ("bootstrap", "init", "demo", "rollback", "doctor") and ran:
        console.print(_counts_table(report))
    for label, key in (
        ("rejected by code", "rejects_by_code"),
        ("warnings by code", "warnings_by_code"),
    ):
        if report.get(key):
            console.print(
                f"{label}: " + ", ".join(f"{k}={v}" for k, v in report[key].items()),
                highlight=False,
                markup=False,
            )
    if report.get("rejects_file"):
        console.print(f"rejects: {report['rejects_file']}", highlight=False, markup=False)
    console.print(f"report: {report.get('run_dir')}/report.json", highlight=False, markup=False)
