"""Step 2, Schema: what the target has, what the bootstrap will create, the SQL, Apply.

The object list comes from the engine's schema inspection (the target test, or the apply);
the SQL is the engine's rendering for the source's dimension. Without a database URL
(REST only) the SQL is exported for the Supabase SQL editor instead of applied.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from rich.syntax import Syntax
from rich.text import Text
from textual.containers import Horizontal, VerticalScroll
from textual.widget import Widget
from textual.widgets import Button, Static

from rbmigrate.tui.screens.base import WizardScreen
from rbmigrate.tui.screens.connect import error_text
from rbmigrate.tui.widgets import status

GROUPS = (
    ("extension", "Extension"),
    ("table", "Tables"),
    ("column", "Columns"),
    ("index", "Indexes"),
    ("function", "Functions"),
    ("trigger", "Triggers"),
    ("policy", "Policies"),
)


def objects_text(section: dict[str, Any]) -> Text:
    """Present (✓) and to-create (+) objects, grouped by kind, problems first."""
    status_ = section.get("after") or section.get("before") or {}
    text = Text()
    for problem in status_.get("problems", []):
        text.append(f"✗ {problem}\n", style="bold red")
    present: list[str] = status_.get("present", [])
    missing: list[str] = status_.get("missing", [])
    for key, label in GROUPS:
        have = [p.split(" ", 1)[1] for p in present if p.startswith(key + " ")]
        need = [m.split(" ", 1)[1] for m in missing if m.startswith(key + " ")]
        if not have and not need:
            continue
        text.append(f"{label}", style="bold")
        text.append(f"  {len(have)} ✓  {len(need)} +\n", style="dim")
        for name in need:
            text.append(f"  + {name}\n", style="green")
    if present and not missing:
        text.append("every object is present\n", style="green")
    return text


def summary_text(section: dict[str, Any] | None, target: dict[str, Any] | None) -> Text:
    if not section:
        return Text("Press Check to see what the target holds (or Test on Connect).")
    status_ = section.get("after") or section.get("before") or {}
    state = status_.get("state", "?")
    text = Text(f"schema {status_.get('schema', 'public')}: ", style="bold")
    style = {"ready": "green", "incompatible": "red"}.get(state, "yellow")
    text.append(state, style=f"bold {style}")
    text.append(f" · {section.get('dimension', '?')}-d")
    if target:
        text.append(f" · {target.get('kind', '')} PostgreSQL {target.get('server_version', '?')}")
        pgv = target.get("pgvector_version") or status_.get("pgvector_available")
        text.append(f" · pgvector {pgv or 'missing'}")
    if section.get("applied"):
        created = len((section.get("before") or {}).get("missing", []))
        text.append(f"\n✓ applied: {created} objects created", style="green")
    return text


class SchemaScreen(WizardScreen):
    STEP = "schema"
    JOBS = ("test", "apply", "sql", "migrate")

    def body(self) -> Iterable[Widget]:
        yield Static(id="schema-summary", classes="summary")
        with Horizontal(id="schema-body"):
            with VerticalScroll(id="objects", classes="pane") as objects:
                objects.border_title = "Objects"
                yield Static(id="objects-list")
            with VerticalScroll(id="sql", classes="pane") as sql:
                sql.border_title = "SQL"
                yield Static(id="sql-text")
        with Horizontal(id="schema-actions", classes="actions"):
            yield Button("Check", id="check", compact=True)
            yield Button("Apply", id="apply", variant="primary", compact=True)
            yield Button("Export SQL…", id="export", compact=True)
            yield Button("Next: Plan ›", id="next", variant="success", compact=True)

    def on_mount(self) -> None:
        super().on_mount()
        if self.wizard.state["sql"].outcome is None:
            self.wizard.load_sql()

    def rest_only(self) -> bool:
        t = self.wizard.cfg.target
        return not t.db_url and bool(t.supabase_url)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        app = self.wizard
        actions = {
            "check": app.test_target,
            "apply": app.apply_schema,
            "export": app.export_sql,
            "next": lambda: app.action_goto("plan"),
        }
        action: Callable[[], object] | None = actions.get(event.button.id or "")
        if action is not None:
            action()

    def sync(self) -> None:
        state = self.wizard.state
        section = state.schema_section()
        busy = state["test"].running or state["apply"].running
        summary = self.query_one("#schema-summary", Static)
        latest = max(state["test"], state["apply"], key=lambda job: job.seq)
        if busy:
            status(
                summary, "Applying the schema…" if state["apply"].running else "Checking…", "busy"
            )
        elif latest.error is not None:
            status(summary, error_text(latest), "error")
        elif self.rest_only():
            status(
                summary,
                "REST only (no database URL): export the SQL, run it in the Supabase SQL editor.",
                "warn",
            )
        else:
            status(summary, summary_text(section, state.target_section()), "ok" if section else "")
        self.query_one("#objects-list", Static).update(objects_text(section or {}))
        sql = state["sql"]
        pane = self.query_one("#sql-text", Static)
        if sql.ok and sql.report:
            pane.update(Syntax(sql.report["sql"], "sql", theme="ansi_dark", word_wrap=False))
        elif sql.error:
            pane.update(error_text(sql))
        else:
            pane.update("Rendering the SQL…")
        after = (section or {}).get("after") or {}
        apply = self.query_one("#apply", Button)
        apply.disabled = (
            busy or self.rest_only() or after.get("state", "ready") in ("ready", "incompatible")
        )
        ready = apply.disabled or not after.get("missing")
        apply.label = "Apply" if ready else f"Apply ({len(after['missing'])} objects)"
        self.query_one("#check", Button).disabled = busy
