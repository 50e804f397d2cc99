"""Small widgets shared by the screens: the step bar, status lines, and test-friendly inputs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from rich.text import Text
from textual.app import App
from textual.widget import Widget
from textual.widgets import Static

if TYPE_CHECKING:
    from rbmigrate.tui.app import WizardApp

STEP_LABELS = {
    "connect": "Connect",
    "schema": "Schema",
    "plan": "Plan",
    "migrate": "Migrate",
    "compare": "Compare",
}


def blink_off(widget: Widget, app: App[Any]) -> Widget:
    """Stop a cursor from blinking when the App asks (snapshots must not depend on time)."""
    if not getattr(app, "blink", True) and hasattr(widget, "cursor_blink"):
        widget.cursor_blink = False
    return widget


def step_done(app: WizardApp, step: str) -> bool:
    state = app.state
    if step == "connect":
        return state["scan"].ok and state["test"].ok
    if step == "schema":
        schema = state.schema_section() or {}
        return (schema.get("after") or {}).get("state") == "ready"
    if step == "plan":
        return state["plan"].ok
    return state[step].ok


class StepBar(Static):
    """One line: the five steps (click to jump), the current one highlighted, a ✓ when done,
    and how far a running migration is, whatever the screen."""

    def __init__(self, step: str) -> None:
        super().__init__(id="steps")
        self.step = step

    def update_steps(self) -> None:
        app = cast("WizardApp", self.app)
        parts = ["[b]rbmigrate[/b]"] if app.size.width >= 96 else []
        for key, (step, label) in enumerate(STEP_LABELS.items(), start=2):
            done = " ✓" if step_done(app, step) else ""
            style = "reverse bold " if step == self.step else ""
            parts.append(f"[{style}@click=app.goto('{step}')] F{key} {label}{done} [/]")
        migrate = app.state["migrate"]
        if migrate.running and self.step != "migrate":
            parts.append(f"[b]⟳ {migrate.progress.overall():.0%}[/b]")
        self.update(" " + " ".join(parts))


def status(widget: Static, content: Text | str, kind: str = "") -> None:
    """Set a status line and its style class (ok / warn / error / busy, or none)."""
    widget.update(content)
    for name in ("ok", "warn", "error", "busy"):
        widget.set_class(name == kind, name)
