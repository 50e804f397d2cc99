"""What the wizard knows: one JobState per kind of engine call, owned by the App.

Screens render from this state and never keep results of their own, so a screen opened
after a job finished (or while a migration runs) shows the same thing as one that watched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rbmigrate.engine.api import Outcome
from rbmigrate.events import RunControl
from rbmigrate.tui.progress import RunProgress

JOBS = (
    "demo",
    "scan",
    "test",
    "sql",
    "apply",
    "plan",
    "inspect",
    "migrate",
    "compare",
    "doctor",
)


@dataclass
class JobState:
    name: str
    running: bool = False
    outcome: Outcome | None = None
    control: RunControl | None = None
    progress: RunProgress = field(default_factory=RunProgress)
    args: dict[str, Any] = field(default_factory=dict)
    seq: int = 0  # order in which jobs finished: the freshest result wins

    @property
    def report(self) -> dict[str, Any] | None:
        return self.outcome.report if self.outcome is not None else None

    @property
    def ok(self) -> bool:
        return self.outcome is not None and self.outcome.error is None

    @property
    def error(self) -> dict[str, Any] | None:
        """The error as title/message/hint, from the Outcome's exception or its report."""
        if self.outcome is None:
            return None
        exc = self.outcome.error
        if exc is not None:
            return exc.as_dict()
        err = self.outcome.report.get("error")
        return err if isinstance(err, dict) else None

    def start(self, args: dict[str, Any]) -> RunControl:
        self.running = True
        self.outcome = None
        self.args = args
        self.control = RunControl()
        self.progress = RunProgress()
        return self.control


@dataclass
class WizardState:
    jobs: dict[str, JobState] = field(default_factory=lambda: {n: JobState(n) for n in JOBS})
    kept_snapshots: list[str] = field(default_factory=list)

    def __getitem__(self, name: str) -> JobState:
        return self.jobs[name]

    def freshest(self, key: str, names: tuple[str, ...]) -> dict[str, Any] | None:
        """`report[key]` from whichever of these jobs finished last with one."""
        best: tuple[int, dict[str, Any]] | None = None
        for name in names:
            job = self.jobs[name]
            value = job.report.get(key) if job.report else None
            if isinstance(value, dict) and (best is None or job.seq > best[0]):
                best = (job.seq, value)
        return best[1] if best else None

    def schema_section(self) -> dict[str, Any] | None:
        return self.freshest("schema", ("test", "apply", "migrate"))

    def target_section(self) -> dict[str, Any] | None:
        return self.freshest("target", ("test", "apply", "plan", "migrate"))

    def source_section(self) -> dict[str, Any] | None:
        return self.freshest("source", ("scan", "plan", "migrate"))

    def latest_report(self) -> dict[str, Any] | None:
        """The report a person most likely wants: the migration's, else the plan's, else any."""
        for name in ("migrate", "plan", "compare", "apply", "test", "scan"):
            report = self.jobs[name].report
            if report and report.get("run_dir"):
                return report
        return None
