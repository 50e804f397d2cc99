"""Helpers for the wizard's tests: a fake clock, screen text, waiting on workers without sleeps."""

from __future__ import annotations

import asyncio
import io
import itertools
import threading
from collections.abc import Callable
from typing import Any

from rich.console import Console
from textual.app import App
from textual.pilot import Pilot

from rbmigrate.config import Config
from rbmigrate.tui.app import WizardApp
from rbmigrate.tui.engine import Engine


class FakeClock:
    """A clock that only moves when told to: elapsed times, rates and ETAs are fixed."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.lock = threading.Lock()

    def __call__(self) -> float:
        with self.lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self.lock:
            self.now += seconds


def run_ids() -> Callable[[str], str]:
    """Fixed, distinct run ids: 20250601-090000-scan1, …-plan2, …"""
    counter = itertools.count(1)
    return lambda command: f"20250601-090000-{command}{next(counter)}"


def make_app(cfg: Config, engine: Engine | None = None, **kw: Any) -> WizardApp:
    """A wizard set up for tests: no blinking cursor, every repaint at once, fixed ids."""
    kw.setdefault("clock", FakeClock())
    kw.setdefault("run_ids", run_ids())
    kw.setdefault("cursor_blink", False)
    kw.setdefault("repaint_interval", 0)
    kw.setdefault("offer_demo", False)
    return WizardApp(cfg, engine=engine, **kw)


def screen_text(app: App[Any]) -> str:
    """What the terminal shows, as plain text (the same render the SVG screenshots use)."""
    width, height = app.size
    console = Console(
        width=width,
        height=height,
        file=io.StringIO(),
        force_terminal=True,
        color_system="truecolor",
        record=True,
        legacy_windows=False,
    )
    console.print(
        app.screen._compositor.render_update(full=True, screen_stack=app._background_screens)
    )
    return console.export_text()


async def settle(pilot: Pilot[Any]) -> None:
    """Wait until every worker finished and the messages they posted were handled."""
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.pause()


async def wait_for(pilot: Pilot[Any], event: threading.Event, timeout: float = 30) -> None:
    """Wait (in a thread, not by sleeping on the loop) for a worker to reach a point."""
    reached = await asyncio.to_thread(event.wait, timeout)
    assert reached, "the scripted engine never reached its hold point"
    await pilot.pause()
    await pilot.pause()
