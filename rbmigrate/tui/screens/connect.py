"""Step 1, Connect: where the memories are, where they go, and whether both answer.

The source field takes a Chroma directory or a server URL and says as you type whether it
is a store. Secrets never reach the screen: database URLs show masked (`user:***@host`),
env references verbatim, the Supabase key as dots.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from rich.text import Text
from textual.containers import Horizontal, Vertical
from textual.widget import Widget
from textual.widgets import Button, Input, Label, Select, Static

from rbmigrate.config import is_env_ref
from rbmigrate.errors import RbmigrateError
from rbmigrate.source.formats import check_store_dir
from rbmigrate.tui.fmt import merge_dsn, num, shown_target, yes_no
from rbmigrate.tui.screens.base import WizardScreen
from rbmigrate.tui.state import JobState
from rbmigrate.tui.widgets import blink_off, status

KINDS = [
    ("Embedded PostgreSQL (local)", "embedded"),
    ("PostgreSQL / Supabase URL", "postgres"),
    ("Supabase REST (URL + key)", "rest"),
]


def check_source(value: str) -> tuple[str, str]:
    """(message, kind) for the source field, without reading more than the file header."""
    value = value.strip()
    if not value:
        return "Enter the directory that holds chroma.sqlite3, or a server URL.", ""
    if value.startswith(("http://", "https://")):
        return "Chroma server: read through its HTTP API (no snapshot).", "ok"
    try:
        db = check_store_dir(Path(value).expanduser())
    except RbmigrateError as exc:
        return f"✗ {exc.message}", "error"
    return f"✓ Chroma store ({db.name} found)", "ok"


def error_text(job: JobState) -> Text:
    err = job.error or {}
    text = Text(f"✗ {err.get('title', 'Error')}: ", style="bold")
    text.append(str(err.get("message", "")))
    if err.get("hint"):
        text.append(f"\n  → {err['hint']}", style="italic")
    return text


def scan_text(job: JobState) -> tuple[Text | str, str]:
    if job.running:
        return "Scanning (snapshot, then discover)…", "busy"
    if job.outcome is None:
        return "Scan lists the collections: count, dimension, space, layout.", ""
    if job.error:
        return error_text(job), "error"
    source: dict[str, Any] = job.outcome.report.get("source") or {}
    scan: dict[str, Any] = job.outcome.report.get("scan") or {}
    text = Text(f"{source.get('chroma_format') or 'unknown format'}", style="bold")
    text.append(f" · reader {source.get('reader', '?')}\n")
    for coll in source.get("collections", []):
        chosen = coll["name"] in scan.get("selected", [])
        text.append(f"{'✓' if chosen else '·'} {coll['name']}\n", style="bold" if chosen else "")
        text.append(
            f"  {num(coll['count'])} records · {coll['dimension'] or '?'}-d · "
            f"{coll['space']} · {coll['layout']}\n"
        )
    for problem in scan.get("problems", []):
        text.append(f"! {problem['message']}\n", style="yellow")
    if "source_in_use" in scan.get("notes", []):
        text.append("! the store is open in a live process; a snapshot is read\n", style="yellow")
    return text, "ok"


def test_text(job: JobState) -> tuple[Text | str, str]:
    if job.running:
        return "Connecting…", "busy"
    if job.outcome is None:
        return "Test shows the server, pgvector, and the schema.", ""
    if job.error:
        return error_text(job), "error"
    target: dict[str, Any] = job.outcome.report.get("target") or {}
    schema: dict[str, Any] = (job.outcome.report.get("schema") or {}).get("before") or {}
    text = Text(f"PostgreSQL {target.get('server_version', '?')}", style="bold")
    pgv = target.get("pgvector_version")
    if pgv:
        text.append(f" · pgvector {pgv}")
    elif schema.get("pgvector_available"):
        text.append(f" · pgvector {schema['pgvector_available']} available (not enabled)")
    else:
        text.append(" · no pgvector", style="red")
    text.append(f"\nSupabase: {yes_no(target.get('is_supabase'))} · {target.get('kind', '')}\n")
    state = schema.get("state", "?")
    missing = len(schema.get("missing", []))
    text.append(f"schema {schema.get('schema', 'public')}: {state}")
    if missing:
        text.append(f", {missing} objects to create")
    return text, "ok"


class ConnectScreen(WizardScreen):
    STEP = "connect"
    JOBS = ("scan", "test", "demo")

    def field(self, label: str, widget: Widget, row: str) -> Iterable[Widget]:
        """A one-line labelled row (compact inputs have no border to carry a title)."""
        with Horizontal(classes="field", id=row):
            yield Label(label)
            yield blink_off(widget, self.app)

    def body(self) -> Iterable[Widget]:
        cfg = self.wizard.cfg
        key = cfg.target.supabase_key
        with Horizontal(id="connect-body"):
            with Vertical(id="source-pane", classes="pane") as source:
                source.border_title = "Source: Chroma"
                yield from self.field(
                    "From",
                    Input(
                        cfg.source_location(),
                        placeholder="./chroma_data or a server URL",
                        id="source",
                        compact=True,
                    ),
                    "row-source",
                )
                yield Static(id="source-check", classes="check")
                with Horizontal(classes="buttons"):
                    yield Button("Scan", id="scan", variant="primary", compact=True)
                    yield Button("Create demo store", id="demo", compact=True)
                yield Static(id="scan-result", classes="result")
            with Vertical(id="target-pane", classes="pane") as target:
                target.border_title = "Target: Supabase / PostgreSQL"
                yield from self.field(
                    "To",
                    Select(KINDS, value=self.kind(), allow_blank=False, id="kind", compact=True),
                    "row-kind",
                )
                yield from self.field(
                    "URL",
                    Input(
                        shown_target(cfg.target.db_url),
                        placeholder="postgresql://user:PASSWORD@host:5432/db or env:NAME",
                        id="db-url",
                        compact=True,
                    ),
                    "row-db-url",
                )
                yield from self.field(
                    "URL",
                    Input(
                        cfg.target.supabase_url,
                        placeholder="https://PROJECT.supabase.co",
                        id="supabase-url",
                        compact=True,
                    ),
                    "row-supabase-url",
                )
                yield from self.field(
                    "Key",
                    Input(
                        key,
                        placeholder="service-role key or env:SUPABASE_KEY",
                        password=bool(key) and not is_env_ref(key),
                        id="supabase-key",
                        compact=True,
                    ),
                    "row-supabase-key",
                )
                with Horizontal(classes="buttons"):
                    yield Button("Test", id="test", variant="primary", compact=True)
                yield Static(id="test-result", classes="result")
        with Horizontal(id="connect-actions", classes="actions"):
            yield Button("Save config", id="save", compact=True)
            yield Button("Next: Schema ›", id="next", variant="success", compact=True)

    def kind(self) -> str:
        t = self.wizard.cfg.target
        if t.db_url.startswith("embedded"):
            return "embedded"
        if not t.db_url and t.supabase_url:
            return "rest"
        return "postgres"

    demo_seen = 0

    def on_mount(self) -> None:
        super().on_mount()
        self.show_kind(self.kind())
        self.on_source_changed(self.query_one("#source", Input).value)
        if self.wizard.offer_demo:
            self.wizard.offer_demo = False
            self.wizard.offer_demo_store()

    # --- input ------------------------------------------------------------------------------
    def on_source_changed(self, value: str) -> None:
        message, kind = check_source(value)
        status(self.query_one("#source-check", Static), message, kind)
        self.query_one("#scan", Button).disabled = kind != "ok"
        self.query_one("#demo", Button).display = kind != "ok"
        src = self.wizard.cfg.source
        value = value.strip()
        is_url = value.startswith(("http://", "https://"))
        src.chroma_url, src.chroma_path = (value, "") if is_url else ("", value)

    def on_input_changed(self, event: Input.Changed) -> None:
        target = self.wizard.cfg.target
        if event.input.id == "source":
            self.on_source_changed(event.value)
        elif event.input.id == "db-url":
            target.db_url = merge_dsn(event.value.strip(), target.db_url)
        elif event.input.id == "supabase-url":
            target.supabase_url = event.value.strip()
        elif event.input.id == "supabase-key":
            target.supabase_key = event.value.strip()
            event.input.password = not is_env_ref(target.supabase_key)

    def on_input_blurred(self, event: Input.Blurred) -> None:
        if event.input.id == "db-url":  # a typed password disappears behind the mask
            shown = shown_target(self.wizard.cfg.target.db_url)
            if event.input.value != shown:
                event.input.value = shown

    def on_select_changed(self, event: Select.Changed) -> None:
        kind = str(event.value)
        target = self.wizard.cfg.target
        db = self.query_one("#db-url", Input)
        if kind == "embedded" and not target.db_url.startswith("embedded"):
            target.db_url = "embedded"
        elif kind == "rest" or (kind == "postgres" and target.db_url.startswith("embedded")):
            target.db_url = ""
        if db.value != shown_target(target.db_url):
            db.value = shown_target(target.db_url)
        self.show_kind(kind)

    def show_kind(self, kind: str) -> None:
        self.query_one("#row-db-url").display = kind != "rest"
        self.query_one("#row-supabase-url").display = kind == "rest"
        self.query_one("#row-supabase-key").display = kind == "rest"

    def on_button_pressed(self, event: Button.Pressed) -> None:
        app = self.wizard
        actions = {
            "scan": app.scan_source,
            "test": app.test_target,
            "save": app.save_config,
            "demo": app.offer_demo_store,
            "next": lambda: app.action_goto("schema"),
        }
        action: Callable[[], object] | None = actions.get(event.button.id or "")
        if action is not None:
            action()

    # --- state ------------------------------------------------------------------------------
    def sync(self) -> None:
        state = self.wizard.state
        demo = state["demo"]
        if demo.ok and demo.report and demo.seq != self.demo_seen:
            self.demo_seen = demo.seq  # fill the field once, then it is the person's again
            self.query_one("#source", Input).value = str(demo.report["demo"]["path"])
        if demo.running:
            status(self.query_one("#source-check", Static), "Writing the demo store…", "busy")
        status(self.query_one("#scan-result", Static), *scan_text(state["scan"]))
        status(self.query_one("#test-result", Static), *test_text(state["test"]))
        self.query_one("#scan", Button).disabled = state["scan"].running or not self.source_ok()
        self.query_one("#test", Button).disabled = state["test"].running

    def source_ok(self) -> bool:
        return check_source(self.query_one("#source", Input).value)[1] == "ok"
