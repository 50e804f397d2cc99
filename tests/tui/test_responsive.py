"""The wizard stays responsive while a real migration runs, and repaints are throttled."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

import pytest
from textual.binding import Binding, BindingType

from rbmigrate.config import Config
from rbmigrate.demo import write_demo
from rbmigrate.engine.api import Outcome
from rbmigrate.events import Event, EventSink, Progress
from rbmigrate.tui.app import WizardApp
from rbmigrate.tui.engine import Engine
from tests.tui.support import settle, wait_for

pytestmark = pytest.mark.slow
KEY_BUDGET_S = 0.1


class TappedEngine(Engine):
    """The real engine, with a tap on the migration's events."""

    def __init__(self) -> None:
        self.writing = threading.Event()
        self.progress = 0
        self.other = 0

    def migrate(self, cfg: Config, *, sink: EventSink, **kw: Any) -> Outcome:
        engine = self

        class Tap:
            def emit(self, event: Event) -> None:
                if isinstance(event, Progress):
                    engine.progress += 1
                    if event.phase == "write":
                        engine.writing.set()
                else:
                    engine.other += 1
                sink.emit(event)

        return super().migrate(cfg, sink=Tap(), **kw)


class ProbeApp(WizardApp):
    """The wizard plus one key whose handling time the test reads."""

    BINDINGS: ClassVar[list[BindingType]] = [
        *WizardApp.BINDINGS,
        Binding("ctrl+t", "probe", "probe", show=False),
    ]
    handled: ClassVar[list[float]] = []

    def action_probe(self) -> None:
        self.handled.append(time.perf_counter())


def test_keys_are_handled_quickly_during_a_migration(
    tmp_path: Path, workdir: Path, db_url: str
) -> None:
    write_demo(workdir / "chroma_data", 1000, embeddings="random")
    cfg = Config()
    cfg.source.chroma_path = "./chroma_data"
    cfg.target.db_url = db_url
    cfg.run.data_dir = str(tmp_path / "data")
    cfg.migration.batch_size = 10  # many small batches: many progress events, a longer run
    engine = TappedEngine()
    asyncio.run(drive(ProbeApp(cfg, engine=engine, cursor_blink=False), engine))


async def drive(app: ProbeApp, engine: TappedEngine) -> None:
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f5")
        await pilot.click("#start")
        await wait_for(pilot, engine.writing, timeout=120)
        started = time.perf_counter()
        latencies = []
        # Pilot waits for the app to go idle after each key, which it never does while the
        # engine works, so keys are a while apart; the latency is to the handler's own stamp.
        while len(latencies) < 3 and app.state["migrate"].running:
            sent = time.perf_counter()
            await pilot.press("ctrl+t")
            latencies.append(app.handled[-1] - sent)
        window = time.perf_counter() - started
        await settle(pilot)
        screen = app.views["migrate"]
        assert app.state["migrate"].ok, app.state["migrate"].error

    assert len(latencies) >= 2, "the migration ended before the keys were pressed"
    assert max(latencies) < KEY_BUDGET_S, latencies
    # ~10 repaints a second at most, plus one per phase change; far fewer than the events
    assert engine.progress > 50
    assert screen.throttle is not None and screen.throttle.renders < engine.progress
    assert window < 60
