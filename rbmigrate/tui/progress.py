"""What a running job looks like to a person: phases, rates, elapsed, ETA and a log.

A plain model fed with engine events and the time each was emitted, so the Migrate screen
renders the same thing whether the run is real or scripted, and a fake clock gives fixed
numbers in snapshots.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from rbmigrate.events import (
    Event,
    LogMessage,
    PhaseFinished,
    PhaseStarted,
    Progress,
    RunFinished,
    RunStarted,
)

# How much of a migration each phase is, for the overall bar (the rest are instant).
WEIGHTS = {
    "snapshot": 4,
    "scan": 8,
    "traces": 3,
    "plan": 60,
    "write": 55,
    "embed": 10,
    "index": 10,
    "verify": 10,
    "parity": 60,
}
LOG_LINES = 1000


@dataclass
class PhaseState:
    name: str
    unit: str = "records"
    total: int | None = None
    done: int = 0
    started: float = 0.0
    finished: float | None = None

    def fraction(self) -> float | None:
        if self.finished is not None:
            return 1.0
        if not self.total:
            return None
        return min(1.0, self.done / self.total)

    def elapsed(self, now: float) -> float:
        end = self.finished if self.finished is not None else now
        return max(0.0, end - self.started)

    def rate(self, now: float) -> float | None:
        spent = self.elapsed(now)
        return self.done / spent if spent > 0 and self.done > 0 else None

    def eta(self, now: float) -> float | None:
        speed = self.rate(now)
        if self.finished is not None or not self.total or not speed:
            return None
        return max(0, self.total - self.done) / speed


@dataclass(frozen=True)
class LogLine:
    at: float  # seconds since the run started
    level: str
    text: str


@dataclass
class RunProgress:
    run_id: str | None = None
    run_dir: str | None = None
    started: float | None = None
    finished: float | None = None
    phases: dict[str, PhaseState] = field(default_factory=dict)
    current: str | None = None
    log: deque[LogLine] = field(default_factory=lambda: deque(maxlen=LOG_LINES))
    logged: int = 0  # lines ever appended: a view appends only what it has not seen
    version: int = 0
    completed: bool = False  # finished with status ok (a stopped run keeps its share)

    def apply(self, event: Event, at: float) -> None:
        self.version += 1
        if isinstance(event, RunStarted):
            if self.started is None:
                self.started = at
            self.run_id, self.run_dir = event.run_id, event.run_dir
            self._log(at, "info", f"run {event.run_id} ({event.command})")
        elif isinstance(event, PhaseStarted):
            self.phases[event.phase] = PhaseState(event.phase, event.unit, event.total, 0, at)
            self.current = event.phase
        elif isinstance(event, Progress):
            phase = self.phases.setdefault(
                event.phase, PhaseState(event.phase, event.unit, None, 0, at)
            )
            phase.done = event.done
            if event.total is not None:
                phase.total = event.total
        elif isinstance(event, PhaseFinished):
            phase = self.phases.setdefault(event.phase, PhaseState(event.phase, started=at))
            phase.done = max(phase.done, event.done)
            phase.finished = at
            if event.done or phase.total:
                self._log(
                    at,
                    "info",
                    f"{event.phase}: {event.done:,} {phase.unit} in {event.elapsed_s:.1f} s",
                )
        elif isinstance(event, LogMessage):
            self._log(at, event.level, event.text)
        elif isinstance(event, RunFinished):
            self.finished = at
            self.current = None
            self.completed = event.report.get("status") == "ok"

    def _log(self, at: float, level: str, text: str) -> None:
        since = at - self.started if self.started is not None else 0.0
        self.log.append(LogLine(since, level, text))
        self.logged += 1

    def new_lines(self, seen: int) -> list[LogLine]:
        """Lines appended after the first `seen` (those still kept)."""
        fresh = self.logged - seen
        if fresh <= 0:
            return []
        return list(self.log)[-min(fresh, len(self.log)) :]

    def overall(self) -> float:
        if self.completed:
            return 1.0
        total = sum(WEIGHTS.values())
        done = 0.0
        for name, phase in self.phases.items():
            weight = WEIGHTS.get(name, 0)
            done += weight * (phase.fraction() or 0.0)
        seen = {n for n in self.phases if n in WEIGHTS}
        if "plan" not in seen:
            total -= WEIGHTS["plan"]
        if "parity" not in seen:
            total -= WEIGHTS["parity"]
        if seen & {"plan", "parity"}:
            total -= sum(WEIGHTS[n] for n in ("write", "embed", "index", "verify"))
        return min(1.0, done / total) if total > 0 else 0.0

    def elapsed(self, now: float) -> float:
        if self.started is None:
            return 0.0
        end = self.finished if self.finished is not None else now
        return max(0.0, end - self.started)

    def eta(self, now: float) -> float | None:
        """Time left for the whole run, extrapolated from the weighted share done so far
        (each phase shows its own, rate-based ETA)."""
        if self.finished is not None or self.started is None:
            return None
        share = self.overall()
        if share < 0.02:
            return None
        return self.elapsed(now) * (1 - share) / share

    def summary(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "phases": list(self.phases), "logged": self.logged}
