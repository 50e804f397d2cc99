"""Modal screens: help, errors with copyable text, yes/no questions, a path prompt, a report."""

from __future__ import annotations

from importlib import resources
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Markdown, Static, TextArea

from rbmigrate.tui.widgets import blink_off


def help_text(step: str) -> str:
    """The markdown help of one step (shipped in rbmigrate/tui/help/)."""
    try:
        return resources.files("rbmigrate.tui").joinpath("help", f"{step}.md").read_text("utf-8")
    except (FileNotFoundError, OSError):
        return f"# {step.title()}\n\nNo help for this screen."


class HelpScreen(ModalScreen[None]):
    """F1: what the current screen does and which keys it has."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,f1,q", "dismiss", "Close"),
    ]

    def __init__(self, step: str) -> None:
        super().__init__(classes="modal")
        self.step = step

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="wide tall"):
            yield Markdown(help_text(self.step), id="help")
            yield Button("Close (Esc)", id="close", compact=True)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None)


class ErrorScreen(ModalScreen[None]):
    """A long error: title, message and hint in a read-only text area (select and copy)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "dismiss", "Close")]

    def __init__(self, title: str, message: str, hint: str | None) -> None:
        super().__init__(classes="modal")
        self.title_text = title
        self.body = message + (f"\n\n→ {hint}" if hint else "")

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="wide error"):
            yield Label(self.title_text, id="title")
            area = TextArea(self.body, read_only=True, soft_wrap=True, id="error-text")
            blink_off(area, self.app)
            yield area
            with Horizontal(classes="buttons"):
                yield Button("Copy", id="copy", compact=True)
                yield Button("Close (Esc)", id="close", variant="primary", compact=True)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "copy":
            self.app.copy_to_clipboard(f"{self.title_text}\n{self.body}")
            self.notify("Copied to the clipboard.")
            return
        self.dismiss(None)


class ConfirmScreen(ModalScreen[bool]):
    """A yes/no question; dismisses with True for yes."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "no", "No")]

    def __init__(self, title: str, question: str, *, yes: str = "Yes", no: str = "No") -> None:
        super().__init__(classes="modal")
        self.title_text, self.question, self.yes, self.no = title, question, yes, no

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(self.title_text, id="title")
            yield Static(self.question, id="question")
            with Horizontal(classes="buttons"):
                yield Button(self.yes, id="yes", variant="primary", compact=True)
                yield Button(self.no, id="no", compact=True)

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_no(self) -> None:
        self.dismiss(False)


class PathScreen(ModalScreen[str | None]):
    """Ask for a file path; dismisses with the path, or None when cancelled."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, note: str, default: str) -> None:
        super().__init__(classes="modal")
        self.title_text, self.note, self.default = title, note, default

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(self.title_text, id="title")
            yield Static(self.note, id="question")
            field = Input(self.default, id="path", compact=True)
            blink_off(field, self.app)
            yield field
            with Horizontal(classes="buttons"):
                yield Button("Save", id="save", variant="primary", compact=True)
                yield Button("Cancel", id="cancel", compact=True)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "save":
            self.dismiss(self.query_one("#path", Input).value.strip() or None)
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ReportScreen(ModalScreen[None]):
    """A run's report.json, read-only and copyable."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "dismiss", "Close")]

    def __init__(self, path: str, text: str) -> None:
        super().__init__(classes="modal")
        self.path, self.text = path, text

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="wide tall"):
            yield Label(self.path, id="title")
            area = TextArea(self.text, read_only=True, id="report-text")
            blink_off(area, self.app)
            yield area
            yield Button("Close (Esc)", id="close", compact=True)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None)
