"""The wizard App: five screens (modes), engine jobs in App-owned thread workers, errors.

Jobs belong to the App, not to a screen: leaving the Migrate screen never stops a migration.
Engine events arrive as messages (posted from the worker thread), update the job's state,
and the visible screen repaints at most every `repaint_interval` seconds.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from textual import work
from textual.app import App
from textual.binding import Binding, BindingType
from textual.screen import ModalScreen

from rbmigrate.config import (
    DEFAULT_CONFIG_NAME,
    Config,
    secret_variables,
    starter_toml,
    validate,
    write_private,
)
from rbmigrate.engine.api import Outcome
from rbmigrate.errors import ExitCode, InternalError, RbmigrateError
from rbmigrate.events import Progress, RunControl
from rbmigrate.tui.commands import WizardCommands
from rbmigrate.tui.engine import Engine
from rbmigrate.tui.messages import BridgeSink, JobDone, JobEvent
from rbmigrate.tui.screens.base import WizardScreen
from rbmigrate.tui.screens.compare import CompareScreen
from rbmigrate.tui.screens.connect import ConnectScreen
from rbmigrate.tui.screens.doctor import DoctorScreen
from rbmigrate.tui.screens.migrate import MigrateScreen
from rbmigrate.tui.screens.modals import (
    ConfirmScreen,
    ErrorScreen,
    HelpScreen,
    PathScreen,
    ReportScreen,
)
from rbmigrate.tui.screens.plan import PlanScreen
from rbmigrate.tui.screens.schema import SchemaScreen
from rbmigrate.tui.state import WizardState

STEPS = ("connect", "schema", "plan", "migrate", "compare")
DEMO_PATH = "./chroma_data"
TOAST_LIMIT = 160  # longer errors open a modal with copyable text


class WizardApp(App[int]):
    """`rbmigrate` with no command: connect → schema → plan → migrate → compare."""

    CSS_PATH = Path(__file__).with_name("app.tcss")  # absolute: subclasses live elsewhere
    TITLE = "rbmigrate"
    MODES: ClassVar[dict[str, Any]] = {
        "connect": ConnectScreen,
        "schema": SchemaScreen,
        "plan": PlanScreen,
        "migrate": MigrateScreen,
        "compare": CompareScreen,
    }
    DEFAULT_MODE = "connect"
    COMMANDS = App.COMMANDS | {WizardCommands}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f1", "help", "Help"),
        Binding("f2", "goto('connect')", "Connect", show=False),
        Binding("f3", "goto('schema')", "Schema", show=False),
        Binding("f4", "goto('plan')", "Plan", show=False),
        Binding("f5", "goto('migrate')", "Migrate", show=False),
        Binding("f6", "goto('compare')", "Compare", show=False),
        Binding("f7", "doctor", "Doctor", show=False),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]

    def __init__(
        self,
        cfg: Config,
        *,
        engine: Engine | None = None,
        clock: Callable[[], float] | None = None,
        run_ids: Callable[[str], str] | None = None,
        repaint_interval: float = 0.1,
        cursor_blink: bool = True,
        demo_records: int = 500,
        demo_embeddings: str = "real",
        offer_demo: bool | None = None,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.engine = engine or Engine()
        self.clock = clock or time.monotonic
        self.run_ids = run_ids
        self.repaint_interval = repaint_interval
        self.blink = cursor_blink
        self.demo_records = demo_records
        self.demo_embeddings = demo_embeddings
        self.state = WizardState()
        self.views: dict[str, WizardScreen] = {}
        self._finished = 0
        self._quit_when_idle = False
        self.offer_demo = prefill(cfg) if offer_demo is None else offer_demo

    # --- jobs -------------------------------------------------------------------------------
    def start_job(self, name: str, call: Callable[..., Outcome], **args: Any) -> bool:
        """Run `call(**args, sink=…, control=…, run_id=…, clock=…)` in a worker; False if busy."""
        job = self.state[name]
        if job.running:
            self.notify(f"{name} is already running.", severity="warning")
            return False
        control = job.start(args)
        self._run_job(name, call, args, control)
        self.refresh_views(name, urgent=True)
        return True

    @work(thread=True, exit_on_error=False, group="jobs")
    def _run_job(
        self, name: str, call: Callable[..., Outcome], args: dict[str, Any], control: RunControl
    ) -> None:
        sink = BridgeSink(self, name, self.clock)
        run_id = self.run_ids(name) if self.run_ids else None
        try:
            outcome = call(**args, sink=sink, control=control, run_id=run_id, clock=self.clock)
        except Exception as exc:  # the engine turns its errors into Outcomes; this is a bug
            error = InternalError(f"unexpected {type(exc).__name__}: {exc}"[:400])
            outcome = Outcome({"status": "failed", "error": None}, error.exit_code, error)
        self.post_message(JobDone(name, outcome))

    def on_job_event(self, message: JobEvent) -> None:
        self.state[message.job].progress.apply(message.event, message.at)
        self.refresh_views(message.job, urgent=not isinstance(message.event, Progress))

    def on_job_done(self, message: JobDone) -> None:
        job = self.state[message.job]
        job.running = False
        job.outcome = message.outcome
        self._finished += 1
        job.seq = self._finished
        if message.job == "plan" and message.outcome.report.get("run_dir"):
            self.discard_snapshots()  # only the latest plan's records can be inspected
            self.state.kept_snapshots.append(str(message.outcome.report["run_dir"]))
        error = job.error
        if message.job == "doctor" and message.outcome.report.get("doctor"):
            self.clear_notifications()  # the "checking…" toast
            self.push_screen(DoctorScreen(message.outcome.report))  # failed checks shown there
            error = None
        if message.outcome.exit_code == ExitCode.INTERRUPTED and error is not None:
            hint = f"\n{error['hint']}" if error.get("hint") else ""
            self.notify(
                f"{error['message']}{hint}", title="Stopped", severity="warning", markup=False
            )
        elif error is not None and not self._quit_when_idle:
            self.show_error(error)
        self.refresh_views(message.job, urgent=True)
        if self._quit_when_idle and not self.state["migrate"].running:
            self.exit(self.exit_code())

    def refresh_views(self, job: str, *, urgent: bool = False) -> None:
        for view in self.views.values():
            if job in view.JOBS or job == "migrate":  # every step bar shows the migration
                view.job_changed(job, urgent=urgent)
        screen: Any = self.screen  # a modal that shows a job (the record inspector)
        if not isinstance(screen, WizardScreen) and job in getattr(screen, "JOBS", ()):
            screen.job_changed(job, urgent=urgent)

    # --- what the screens and the palette ask for -------------------------------------------
    def job_config(self) -> Config | None:
        """A frozen copy of the config for one job, or None (and an error) if it is invalid."""
        try:
            validate(self.cfg)
        except RbmigrateError as exc:
            self.show_error(exc.as_dict())
            return None
        return copy.deepcopy(self.cfg)

    def run_engine(self, name: str, call: Callable[..., Outcome], **args: Any) -> bool:
        cfg = self.job_config()
        return cfg is not None and self.start_job(name, call, cfg=cfg, **args)

    def scan_source(self) -> None:
        self.run_engine("scan", self.engine.scan)

    def test_target(self) -> None:
        self.run_engine("test", self.engine.test_target)

    def load_sql(self) -> None:
        self.run_engine("sql", self.engine.schema_sql)

    def apply_schema(self) -> None:
        self.run_engine("apply", self.engine.apply_schema)

    def plan_now(self) -> None:
        self.run_engine("plan", self.engine.plan)

    def run_doctor(self) -> None:
        if self.run_engine("doctor", self.engine.doctor):
            self.notify("Doctor: checking the source, the target and the model…", timeout=4)

    def run_plan(self) -> None:
        self.action_goto("plan")
        self.plan_now()

    def start_migration(self, resume: str | None = None) -> None:
        self.run_engine("migrate", self.engine.migrate, resume=resume)

    def compare(self, **args: Any) -> None:
        self.run_engine("compare", self.engine.compare, **args)

    def inspect(self, source_id: str) -> None:
        report = self.state["plan"].report or {}
        self.run_engine(
            "inspect", self.engine.inspect, run_dir=report.get("run_dir", ""), source_id=source_id
        )

    def offer_demo_store(self) -> None:
        def answered(create: bool | None) -> None:
            if create:
                self.run_engine(
                    "demo",
                    self.engine.demo,
                    path=DEMO_PATH,
                    records=self.demo_records,
                    embeddings=self.demo_embeddings,
                )

        self.push_screen(
            ConfirmScreen(
                "No Chroma store here",
                f"There is no {DEMO_PATH} in this directory. Create a demo store there "
                f"({self.demo_records} realistic memories in three workspaces) to try the "
                "migration on?",
                yes="Create demo store",
                no="Not now",
            ),
            answered,
        )

    def save_config(self) -> None:
        def chosen(path: str | None) -> None:
            if not path:
                return
            try:
                write_private(path, starter_toml(self.cfg), overwrite=True)
            except (RbmigrateError, OSError) as exc:
                self.notify(str(exc), title="Not saved", severity="error", markup=False)
                return
            names = secret_variables(self.cfg)
            extra = f"; set {', '.join(names)} in your environment" if names else ""
            self.notify(f"Wrote {path} (mode 0600){extra}.", title="Config saved", markup=False)

        self.push_screen(
            PathScreen(
                "Save config",
                "TOML, readable by you only. Secrets are written as env:NAME references.",
                self.cfg.path or DEFAULT_CONFIG_NAME,
            ),
            chosen,
        )

    def export_sql(self) -> None:
        sql = self.state["sql"].report or {}
        if "sql" not in sql:
            self.notify("The SQL is not rendered yet.", severity="warning")
            return

        def chosen(path: str | None) -> None:
            if not path:
                return
            try:
                Path(path).write_text(sql["sql"], encoding="utf-8")
            except OSError as exc:
                self.notify(str(exc), title="Not written", severity="error", markup=False)
                return
            self.notify(
                f"Wrote {path}: paste it into the Supabase SQL editor, then press Check.",
                title="SQL exported",
                markup=False,
            )

        self.push_screen(
            PathScreen(
                "Export SQL", "The schema for the Supabase SQL editor.", "rbmigrate-schema.sql"
            ),
            chosen,
        )

    def open_report(self) -> None:
        report = self.state.latest_report()
        if report is None:
            self.notify("No run has a report yet.", severity="warning")
            return
        path = Path(report["run_dir"]) / "report.json"
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            text = json.dumps(report, indent=2, default=str)
        self.push_screen(ReportScreen(str(path), text))

    # --- errors -----------------------------------------------------------------------------
    def show_error(self, error: dict[str, Any]) -> None:
        """Short errors as a toast (the screen shows the hint too); long ones in a modal
        whose text can be selected and copied."""
        title = str(error.get("title") or "Error")
        text = str(error.get("message") or "")
        hint = str(error.get("hint") or "")
        if len(text) > TOAST_LIMIT or "\n" in text or "\n" in hint or len(hint) > 2 * TOAST_LIMIT:
            self.push_screen(ErrorScreen(title, text, hint or None))
            return
        body = f"{text}\n→ {hint}" if hint and len(text) + len(hint) <= TOAST_LIMIT else text
        self.notify(body, title=title, severity="error", markup=False, timeout=8)

    # --- actions ----------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        modal = isinstance(self.screen, ModalScreen)
        return not (modal and action in ("goto", "help"))

    def action_goto(self, step: str) -> None:
        if step in STEPS:
            self.switch_mode(step)

    def action_doctor(self) -> None:
        self.run_doctor()

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.current_mode))

    async def action_quit(self) -> None:
        migrate = self.state["migrate"]
        if not migrate.running:
            self.exit(self.exit_code())
            return

        def answered(stop: bool | None) -> None:
            if stop and migrate.control is not None:
                self._quit_when_idle = True
                migrate.control.request_cancel()
                self.notify("Stopping after the current batch, then quitting…", timeout=30)

        self.push_screen(
            ConfirmScreen(
                "A migration is running",
                "Quit now? It stops cleanly after the current batch; everything committed is "
                "kept and the run can be resumed.",
                yes="Stop and quit",
                no="Keep running",
            ),
            answered,
        )

    def exit_code(self) -> int:
        outcome = self.state["migrate"].outcome
        return int(outcome.exit_code) if outcome is not None else int(ExitCode.OK)

    def on_unmount(self) -> None:
        """Never leave a worker blocked (paused) behind, nor a snapshot kept for inspection."""
        for job in self.state.jobs.values():
            if job.running and job.control is not None:
                job.control.request_cancel()
        self.discard_snapshots()

    def discard_snapshots(self) -> None:
        """Drop the snapshots plans kept for inspection (unless the config keeps snapshots)."""
        if not self.cfg.migration.keep_snapshot:
            for run_dir in self.state.kept_snapshots:
                self.engine.discard_snapshot(run_dir)
        self.state.kept_snapshots.clear()


def prefill(cfg: Config) -> bool:
    """Fill the source with ./chroma_data when nothing is configured; True to offer a demo."""
    if cfg.source.chroma_path or cfg.source.chroma_url:
        return False
    if Path("chroma_data").is_dir():
        cfg.source.chroma_path = "./chroma_data"
        return False
    return True


def run_wizard(cfg: Config) -> int:
    """Entry point for `rbmigrate` with no command; returns the process exit code."""
    result = WizardApp(cfg).run()
    return int(result) if result is not None else int(ExitCode.OK)
