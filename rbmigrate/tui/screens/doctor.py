"""The Doctor panel: `rbmigrate doctor`'s checks, one line each with what to do.

Opened from the palette or with F7; the checks run in an App worker (engine.api.doctor), and
the panel shows the finished report, so it looks the same as the headless command's output.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, cast

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static

if TYPE_CHECKING:
    from rbmigrate.tui.app import WizardApp

MARKS = {"ok": ("✓", "green"), "warn": ("!", "yellow"), "fail": ("✗", "bold red")}


def checks_table(checks: list[dict[str, Any]]) -> Table:
    table = Table(show_header=False, box=None, expand=True, padding=(0, 1))
    table.add_column(width=1)
    table.add_column(width=17, no_wrap=True, style="bold")  # "statement timeout"
    table.add_column(ratio=1)
    for check in checks:
        mark, style = MARKS.get(str(check.get("status")), ("?", "dim"))
        body = Text(str(check.get("detail") or ""))
        if check.get("advice"):
            body.append(f"\n→ {check['advice']}", style="italic")
        table.add_row(Text(mark, style=style), str(check.get("name")), body)
    return table


def summary(doctor: dict[str, Any]) -> Text:
    failed, warnings = doctor.get("failed") or [], doctor.get("warnings") or []
    if failed:
        return Text(f"✗ {len(failed)} failed: {', '.join(failed)}", style="bold red")
    if warnings:
        return Text(f"! ready, with {len(warnings)} warnings: {', '.join(warnings)}", "yellow")
    return Text("✓ every check passed: ready to migrate", style="bold green")


class DoctorScreen(ModalScreen[None]):
    """The preflight checks of a finished doctor run; Run again repeats them."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "dismiss", "Close")]

    def __init__(self, report: dict[str, Any]) -> None:
        super().__init__(classes="modal")
        self.report = report

    def compose(self) -> ComposeResult:
        doctor = self.report.get("doctor") or {}
        with Vertical(id="dialog", classes="wide tall"):
            yield Label("Doctor: what a migration needs", id="title")
            yield Static(summary(doctor), id="doctor-summary")
            with VerticalScroll():
                yield Static(checks_table(doctor.get("checks") or []), id="doctor-checks")
            with Horizontal(classes="buttons"):
                yield Button("Run again", id="again", compact=True)
                yield Button("Close (Esc)", id="close", variant="primary", compact=True)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None)
        if event.button.id == "again":
            cast("WizardApp", self.app).run_doctor()
