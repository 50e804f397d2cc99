"""A scripted engine: canned reports, and a migration that emits real-looking events on a fake
clock, can stop at a hold point (running / paused / cancelled states), and obeys RunControl."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from rbmigrate.config import Config
from rbmigrate.engine.api import Outcome
from rbmigrate.errors import Interrupted
from rbmigrate.events import (
    EventSink,
    LogMessage,
    PhaseFinished,
    PhaseStarted,
    Progress,
    RunControl,
    RunFinished,
    RunStarted,
)
from rbmigrate.tui.engine import Engine
from tests.tui import canned
from tests.tui.support import FakeClock

Answer = Callable[[str], Outcome]
TOTAL = 100_000
BATCH = 2_000


class ScriptedEngine(Engine):
    def __init__(self, clock: FakeClock, *, hold_at: int | None = None, **answers: Answer) -> None:
        self.clock = clock
        self.hold_at = hold_at  # records written when the migration stops to be looked at
        self.reached = threading.Event()
        self.release = threading.Event()
        self.answers: dict[str, Answer] = {
            "scan": canned.scan,
            "test": canned.test_target,
            "apply": canned.apply,
            "plan": canned.plan,
            "inspect": lambda _: canned.inspect_rejected(),
            "migrate": canned.migrate,
            "compare": canned.compare,
            "parity": canned.parity,
            "doctor": canned.doctor,
        }
        self.answers.update(answers)
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def answer(self, name: str, kw: dict[str, Any]) -> Outcome:
        self.calls.append((name, kw))
        return self.answers[name](kw.get("run_id") or f"20250601-090000-{name}")

    def scan(self, cfg: Config, **kw: Any) -> Outcome:
        return self.answer("scan", kw)

    def test_target(self, cfg: Config, **kw: Any) -> Outcome:
        return self.answer("test", kw)

    def apply_schema(self, cfg: Config, **kw: Any) -> Outcome:
        return self.answer("apply", kw)

    def schema_sql(self, cfg: Config, **kw: Any) -> Outcome:
        return Outcome({"sql": canned.SQL}, canned.ExitCode.OK)

    def plan(self, cfg: Config, **kw: Any) -> Outcome:
        return self.answer("plan", kw)

    def inspect(self, cfg: Config, **kw: Any) -> Outcome:
        return self.answer("inspect", kw)

    def doctor(self, cfg: Config, **kw: Any) -> Outcome:
        return self.answer("doctor", kw)

    def compare(self, cfg: Config, **kw: Any) -> Outcome:
        return self.answer("parity" if kw.get("parity") else "compare", kw)

    def discard_snapshot(self, run_dir: str) -> None:
        return None

    # --- the migration ----------------------------------------------------------------------
    def migrate(
        self,
        cfg: Config,
        *,
        sink: EventSink,
        control: RunControl,
        run_id: str | None,
        **kw: Any,
    ) -> Outcome:
        run_id = run_id or "20250601-090000-migrate"
        self.calls.append(("migrate", kw))
        try:
            self.script(sink, control, run_id)
        except Interrupted:
            outcome = canned.interrupted(run_id)
        else:
            outcome = self.answers["migrate"](run_id)
        sink.emit(RunFinished(outcome.report))
        return outcome

    def phase(self, sink: EventSink, name: str, seconds: float, done: int, **kw: Any) -> None:
        sink.emit(PhaseStarted(name, **kw))
        self.clock.advance(seconds)
        sink.emit(PhaseFinished(name, done, seconds))

    def script(self, sink: EventSink, control: RunControl, run_id: str) -> None:
        sink.emit(RunStarted(run_id, "migrate", canned.run_dir(run_id)))
        self.phase(sink, "connect", 0.4, 0, unit="steps")
        self.phase(sink, "snapshot", 2.0, 0, unit="files")
        self.phase(sink, "discover", 0.1, 2, unit="collections")
        sink.emit(LogMessage("info", "creating 38 schema objects in public"))
        self.phase(sink, "bootstrap", 0.6, 38, unit="objects")
        sink.emit(PhaseStarted("scan", TOTAL))
        for done in (50_000, TOTAL):
            self.clock.advance(2.0)
            sink.emit(Progress("scan", done, TOTAL))
        sink.emit(PhaseFinished("scan", TOTAL, 4.0))
        self.phase(sink, "traces", 1.5, 41_233, unit="traces")
        sink.emit(
            LogMessage("info", "initial load: building idx_memories_embedding after the data")
        )
        sink.emit(PhaseStarted("write", TOTAL))
        for done in range(BATCH, TOTAL + 1, BATCH):
            control.checkpoint(f"resume with: rbmigrate --headless migrate --resume {run_id}")
            self.clock.advance(0.4)
            sink.emit(Progress("write", done, TOTAL))
            if done == 20_000:
                sink.emit(
                    LogMessage(
                        "warning",
                        "24 memories name a parent that is not in the source",
                        code="parent_not_found",
                    )
                )
            if done == self.hold_at:
                self.hold(control, run_id)
        sink.emit(PhaseFinished("write", TOTAL, 20.0))
        self.phase(sink, "embed", 6.0, 41_233, total=41_233, unit="tasks")
        self.phase(sink, "index", 9.0, 141_233, unit="tuples")
        self.phase(sink, "verify", 3.0, TOTAL, total=TOTAL)

    def hold(self, control: RunControl, run_id: str) -> None:
        """Stay mid-run until released, checking the control as the engine does."""
        self.reached.set()
        while not self.release.wait(0.02):
            control.checkpoint(f"resume with: rbmigrate --headless migrate --resume {run_id}")
