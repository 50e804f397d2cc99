"""What every step screen shares: the step bar, the footer, and throttled repaints.

A screen renders from the App's state in `sync()`. Job changes poke a throttle: the visible
screen repaints at most every `repaint_interval` seconds (phase changes and results at once);
a hidden screen only notes that it is stale and syncs when it is shown again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, ClassVar, cast

from textual.app import ComposeResult
from textual.screen import Screen
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import Footer

from rbmigrate.tui.widgets import StepBar

if TYPE_CHECKING:
    from rbmigrate.tui.app import WizardApp


class Throttle:
    """Call `render` at most once per `interval` seconds; urgent pokes render at once."""

    def __init__(self, owner: Widget, interval: float, render: Callable[[], None]) -> None:
        self.owner = owner
        self.interval = interval
        self.render = render
        self.last = 0.0
        self.timer: Timer | None = None
        self.renders = 0

    def poke(self, *, urgent: bool = False) -> None:
        now = time.monotonic()
        wait = self.interval - (now - self.last)
        if urgent or wait <= 0:
            self.fire()
        elif self.timer is None:
            self.timer = self.owner.set_timer(wait, self.fire)

    def fire(self) -> None:
        if self.timer is not None:
            self.timer.stop()
            self.timer = None
        self.last = time.monotonic()
        self.renders += 1
        self.render()


class WizardScreen(Screen[None]):
    """A step of the wizard; subclasses compose `body()` and render in `sync()`."""

    STEP: ClassVar[str] = ""
    JOBS: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        super().__init__(id=f"{self.STEP}-screen")
        self.stale = False
        self.throttle: Throttle | None = None  # set on mount

    @property
    def wizard(self) -> WizardApp:
        return cast("WizardApp", self.app)

    def compose(self) -> ComposeResult:
        yield StepBar(self.STEP)
        yield from self.body()
        yield Footer(compact=True)

    def body(self) -> Iterable[Widget]:
        return ()

    def on_mount(self) -> None:
        self.throttle = Throttle(self, self.wizard.repaint_interval, self.render_state)
        self.wizard.views[self.STEP] = self
        self.render_state()

    def on_screen_resume(self) -> None:
        if self.stale:
            self.render_state()

    def job_changed(self, job: str, *, urgent: bool = False) -> None:
        if self.throttle is None or self.app.screen is not self:
            self.stale = True  # not shown (or not mounted yet): render when it is
            return
        self.throttle.poke(urgent=urgent)

    def render_state(self) -> None:
        self.stale = False
        self.query_one(StepBar).update_steps()
        self.sync()

    def sync(self) -> None:
        """Render the App's state into this screen's widgets."""
