"""Step 4, Migrate: progress by phase, a live log, pause / cancel, and the reconciliation.

The migration is an App job: this screen only renders it, so switching screens never stops
it. Pause and Cancel go through the job's RunControl, which the engine checks between
batches; a cancelled run says how to resume, and Resume continues it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text
from textual.containers import Horizontal
from textual.widget import Widget
from textual.widgets import Button, RichLog, Static

from rbmigrate.errors import ExitCode
from rbmigrate.tui.fmt import bar, duration, num, rate
from rbmigrate.tui.progress import WEIGHTS, LogLine, RunProgress
from rbmigrate.tui.screens.base import WizardScreen
from rbmigrate.tui.state import JobState
from rbmigrate.tui.widgets import status

LABELS = {
    "snapshot": "read: snapshot",
    "scan": "read: scan",
    "traces": "read: traces",
    "bootstrap": "schema",
    "write": "write",
    "embed": "task vectors",
    "index": "index build",
    "verify": "verify",
}
LEVEL_STYLE = {"warning": "yellow", "error": "bold red"}
RATED = ("records", "tuples", "tasks", "traces", "queries")  # units worth a rate


def phases_table(progress: RunProgress, now: float) -> Table:
    table = Table(box=None, expand=True, padding=(0, 1), show_edge=False, show_header=False)
    for name, kw in (
        ("phase", {"no_wrap": True}),
        ("progress", {"ratio": 1, "no_wrap": True}),
        ("done", {"justify": "right", "no_wrap": True}),
        ("rate", {"justify": "right", "no_wrap": True}),
        ("time", {"justify": "right", "no_wrap": True}),
    ):
        table.add_column(name, header_style="bold", **kw)
    for name, phase in progress.phases.items():
        if name not in LABELS and name not in WEIGHTS:
            continue
        fraction = phase.fraction()
        total = f"/{num(phase.total)}" if phase.total and phase.finished is None else ""
        eta = phase.eta(now) if progress.finished is None else None
        if phase.finished is not None:
            when = Text(f"✓ {duration(phase.elapsed(now))}", style="green")
        elif progress.finished is not None:
            when = Text(f"■ {duration(phase.elapsed(now))}", style="yellow")
        else:
            when = Text(f"ETA {duration(eta)}" if eta is not None else duration(phase.elapsed(now)))
        done = num(phase.done) if phase.done or phase.total else "–"
        table.add_row(
            LABELS.get(name, name),
            ProgressBar(
                total=100,
                completed=round((fraction or 0.0) * 100),
                complete_style="green" if phase.finished is not None else "cyan",
                finished_style="green",
            ),
            f"{done}{total}",
            rate(phase.rate(now), phase.unit) if phase.unit in RATED else "",
            when,
        )
    return table


def overall_text(job: JobState, now: float) -> Text:
    progress = job.progress
    share = progress.overall()
    text = Text(f"{share:>4.0%} ", style="bold")
    text.append(bar(share, 24), style="green" if progress.finished is not None else "cyan")
    text.append(f"  elapsed {duration(progress.elapsed(now))}")
    eta = progress.eta(now)
    if eta is not None:
        text.append(f"  ETA {duration(eta)}", style="bold")
    write = progress.phases.get("write")
    if write is not None and write.rate(now):
        text.append(f"  {rate(write.rate(now))}")
    if job.running and job.control is not None and job.control.paused:
        text.append("  ‖ paused", style="bold yellow")
    if job.running and job.control is not None and job.control.cancel.is_set():
        text.append("  stopping after this batch…", style="bold yellow")
    return text


def result_text(job: JobState) -> tuple[Text | str, str]:
    if job.running:
        return "", ""
    if job.outcome is None:
        return "Start copies every selected record into the target, then verifies it.", ""
    report: dict[str, Any] = job.outcome.report
    err = job.error
    if job.outcome.exit_code == ExitCode.INTERRUPTED:
        text = Text("■ Stopped between batches; everything committed so far is kept.\n", "bold")
        text.append(f"  {err.get('hint') if err else ''}\n  (or press Resume run)")
        return text, "warn"
    text = Text()
    if err is not None:
        text.append(f"✗ {err['title']}: {err['message']}\n", style="bold red")
        if err.get("hint"):
            text.append(f"  → {err['hint']}\n", style="italic")
    elif report.get("status") == "ok":
        text.append(f"✓ Migration finished: run {report.get('run_id')}\n", style="bold green")
    else:
        text.append(f"✗ Migration finished with problems: run {report.get('run_id')}\n", "bold red")
    c = report.get("counts") or {}
    if c.get("source_records"):
        parts = ("inserted", "updated", "unchanged", "rejected", "skipped")
        sum_ok = c["source_records"] == sum(c.get(p, 0) for p in parts)
        text.append(f"{num(c['source_records'])} records = ")
        text.append(" + ".join(f"{num(c.get(p, 0))} {p}" for p in parts))
        text.append(" ✓\n" if sum_ok else " ✗\n", style="green" if sum_ok else "red")
        text.append(
            f"traces {num(c.get('traces_inserted'))} inserted · {num(c.get('traces_updated'))} "
            f"updated · {num(c.get('warnings'))} warnings\n"
        )
    v = report.get("verify")
    if v:
        mark, style = ("✓ ok", "green") if v.get("ok") else ("✗ differs", "red")
        text.append(f"verify {mark}", style=style)
        text.append(
            f": {num(v.get('checked'))} checked · {num(v.get('missing'))} missing · "
            f"{num(v.get('mismatched'))} mismatched · {num(v.get('extra'))} extra\n"
        )
    if report.get("run_dir"):
        rejects = (
            f", rejects.jsonl ({num(c.get('rejected', 0))})" if report.get("rejects_file") else ""
        )
        text.append(f"files: {report['run_dir']}/ report.json{rejects}\n")
    text.rstrip()
    ok = err is None and report.get("status") == "ok"
    return text, "ok" if ok else "error"


class MigrateScreen(WizardScreen):
    STEP = "migrate"
    JOBS = ("migrate",)

    def body(self) -> Iterable[Widget]:
        with Horizontal(id="migrate-actions", classes="actions"):
            yield Button("Start migration", id="start", variant="primary", compact=True)
            yield Button("Pause", id="pause", compact=True)
            yield Button("Cancel", id="cancel", variant="error", compact=True)
            yield Button("Resume run", id="resume", compact=True)
            yield Button("Next: Compare ›", id="next", variant="success", compact=True)
        yield Static(id="overall", classes="summary")
        yield Static(id="phases")
        yield Static(id="result", classes="result")
        log = RichLog(id="log", max_lines=1000, wrap=True)
        log.border_title = "Log"
        yield log

    seen = 0  # log lines already written
    run: RunProgress | None = None

    def on_button_pressed(self, event: Button.Pressed) -> None:
        app = self.wizard
        job = app.state["migrate"]
        button = event.button.id
        if button == "start":
            app.start_migration()
        elif button == "resume" and job.report:
            app.start_migration(resume=job.report.get("run_id"))
        elif button == "pause" and job.control is not None:
            if job.control.paused:
                job.control.resume()
            else:
                job.control.pause()
            self.render_state()
        elif button == "cancel" and job.control is not None:
            job.control.request_cancel()
            self.render_state()
        elif button == "next":
            app.action_goto("compare")

    def sync(self) -> None:
        job = self.wizard.state["migrate"]
        now = self.wizard.clock()
        overall = self.query_one("#overall", Static)
        overall.display = job.progress.started is not None
        if overall.display:
            overall.update(overall_text(job, now))
        self.query_one("#phases", Static).update(phases_table(job.progress, now))
        result = self.query_one("#result", Static)
        content, kind = result_text(job)
        result.display = bool(content)
        status(result, content, kind)
        self.write_log(job.progress)
        control = job.control
        running = job.running
        self.query_one("#start", Button).display = not running
        pause = self.query_one("#pause", Button)
        pause.display = running
        pause.label = "Resume" if running and control is not None and control.paused else "Pause"
        self.query_one("#cancel", Button).display = running
        interrupted = job.outcome is not None and job.outcome.exit_code == ExitCode.INTERRUPTED
        self.query_one("#resume", Button).display = interrupted and not running
        self.query_one("#phases").display = bool(job.progress.phases)

    def write_log(self, progress: RunProgress) -> None:
        log = self.query_one("#log", RichLog)
        if progress is not self.run:  # a new run: start a fresh log
            self.run, self.seen = progress, 0
            log.clear()
        for line in progress.new_lines(self.seen):
            log.write(self.log_line(line))
        self.seen = progress.logged

    @staticmethod
    def log_line(line: LogLine) -> Text:
        text = Text(f"{duration(line.at):>5} ", style="dim")
        text.append(line.text, style=LEVEL_STYLE.get(line.level, ""))
        return text
