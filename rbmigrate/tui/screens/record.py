"""One source record beside the row the record rules make of it (or why it is rejected)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, ClassVar, cast

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static

if TYPE_CHECKING:
    from rbmigrate.tui.app import WizardApp


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def rules_text(record: dict[str, Any]) -> Text:
    text = Text()
    reject = record.get("reject")
    if reject:
        text.append(f"✗ rejected: {reject['code']}", style="bold red")
        text.append(f" — {reject['message']}\n  rule: {reject['rule']}\n")
    for warn in record.get("warnings", []):
        text.append(f"! {warn['code']}", style="bold yellow")
        text.append(f" — {warn['message']}\n  rule: {warn['rule']}\n")
    if not reject and not record.get("warnings"):
        text.append("✓ no rule changed this record\n", style="green")
    return text


class RecordScreen(ModalScreen[None]):
    """Shows the result of the App's `inspect` job for one record."""

    JOBS: ClassVar[tuple[str, ...]] = ("inspect",)
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "dismiss", "Close")]

    def __init__(self, source_id: str, code: str) -> None:
        super().__init__(classes="modal")
        self.source_id, self.code = source_id, code

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="wide tall"):
            yield Label(f"{self.code}: {self.source_id}", id="title")
            yield Static(id="rules")
            with Horizontal(id="record-sides"):
                with VerticalScroll(classes="pane") as left:
                    left.border_title = "Source record (Chroma)"
                    yield Static(id="source-side")
                with VerticalScroll(classes="pane") as right:
                    right.border_title = "Normalized row (memory_items)"
                    yield Static(id="row-side")
            yield Button("Close (Esc)", id="close", compact=True)

    def on_mount(self) -> None:
        self.sync()

    def job_changed(self, job: str, *, urgent: bool = False) -> None:
        self.sync()

    def sync(self) -> None:
        job = cast("WizardApp", self.app).state["inspect"]
        rules = self.query_one("#rules", Static)
        if job.running or job.outcome is None:
            rules.update("Reading the record from the plan's snapshot…")
            return
        if job.error:
            rules.update(Text(f"✗ {job.error['title']}: {job.error['message']}", style="red"))
            return
        record: dict[str, Any] = (job.report or {}).get("record") or {}
        rules.update(rules_text(record))
        self.query_one("#source-side", Static).update(Text(pretty(record.get("source"))))
        row = record.get("row")
        self.query_one("#row-side", Static).update(
            Text(pretty(row)) if row else Text("no row: the record is rejected", style="red")
        )

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None)
