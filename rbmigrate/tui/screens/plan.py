"""Step 3, Plan: the dry run, per collection and workspace, invalid records by code.

Selecting an invalid record opens it next to what the record rules make of it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.text import Text
from textual.containers import Horizontal
from textual.widget import Widget
from textual.widgets import Button, DataTable, Static, TabbedContent, TabPane

from rbmigrate.records.codes import REJECT_HELP, WARN_HELP
from rbmigrate.tui.fmt import duration, num
from rbmigrate.tui.screens.base import WizardScreen
from rbmigrate.tui.screens.connect import error_text
from rbmigrate.tui.screens.record import RecordScreen
from rbmigrate.tui.state import JobState
from rbmigrate.tui.widgets import status

COLUMNS = ("new", "changed", "unchanged", "target_only", "invalid", "skipped")
HEADERS = ("new", "changed", "same", "target-only", "invalid", "skipped")


def summary_text(job: JobState) -> tuple[Text | str, str]:
    if job.running:
        progress = job.progress
        phase = progress.phases.get(progress.current or "")
        if phase is None:
            return "Planning…", "busy"
        total = f"/{num(phase.total)}" if phase.total else ""
        return f"Planning… {phase.name} {num(phase.done)}{total} {phase.unit}", "busy"
    report = job.report
    if not report or not report.get("plan"):
        if job.error:
            return error_text(job), "error"
        return "Run plan: a dry run that writes nothing to the target.", ""
    plan: dict[str, Any] = report["plan"]
    counts: dict[str, Any] = report.get("counts", {})
    text = Text(f"{num(counts.get('source_records'))} records → ", style="bold")
    parts = [f"{num(plan[c])} {h}" for c, h in zip(COLUMNS, HEADERS, strict=True)]
    text.append(" · ".join(p for p in parts if "target-only" not in p))
    traces = plan.get("traces", {})
    text.append(
        f"\n{num(plan['target_only'])} target-only · traces {num(traces.get('new'))} new, "
        f"{num(traces.get('changed'))} changed"
    )
    estimate = (plan.get("estimate_s") or {}).get("total")
    if estimate is not None:
        text.append(f" · estimate {duration(estimate)}")
    schema = plan.get("schema") or {}
    if schema.get("state") and schema["state"] != "ready":
        text.append(f"\nschema {schema['state']}: the migration creates it")
    if job.error:
        text.append("\n")
        text.append_text(error_text(job))
        return text, "error"
    return text, "ok"


def warnings_text(report: dict[str, Any]) -> Text:
    plan = report.get("plan") or {}
    text = Text()
    for problem in plan.get("collection_problems", []):
        style = "bold red" if problem.get("refused") else "yellow"
        text.append(f"{problem['collection']}: {problem['message']}\n", style=style)
    warnings: dict[str, int] = report.get("warnings_by_code") or {}
    if not warnings and not plan.get("collection_problems"):
        return Text("No warnings: every record goes in as it is.", style="green")
    for code, count in warnings.items():
        text.append(f"{num(count):>7} {code}", style="bold")
        text.append(f"  {WARN_HELP.get(code, '')}\n")
    return text


class PlanScreen(WizardScreen):
    STEP = "plan"
    JOBS = ("plan", "inspect")

    def body(self) -> Iterable[Widget]:
        yield Static(id="plan-summary", classes="summary")
        with TabbedContent(id="plan-tabs"):
            with TabPane("Collections", id="tab-collections"):
                yield DataTable(id="by-collection", cursor_type="row", zebra_stripes=True)
            with TabPane("Invalid", id="tab-invalid"):
                yield DataTable(id="invalid", cursor_type="row")
            with TabPane("Warnings", id="tab-warnings"):
                yield Static(id="warnings")
        with Horizontal(id="plan-actions", classes="actions"):
            yield Button("Run plan", id="run", variant="primary", compact=True)
            yield Button("Next: Migrate ›", id="next", variant="success", compact=True)

    def on_mount(self) -> None:
        self.query_one("#by-collection", DataTable).add_columns("collection", "workspace", *HEADERS)
        self.query_one("#invalid", DataTable).add_columns("code", "record", "why")
        super().on_mount()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "run":
            self.wizard.plan_now()
        elif event.button.id == "next":
            self.wizard.action_goto("migrate")

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        key = event.row_key.value
        if event.data_table.id != "invalid" or not key or key.count("\t") != 2:
            return
        _, code, source_id = key.split("\t", 2)
        self.wizard.inspect(source_id)
        self.app.push_screen(RecordScreen(source_id, code))

    def sync(self) -> None:
        job = self.wizard.state["plan"]
        status(self.query_one("#plan-summary", Static), *summary_text(job))
        self.query_one("#run", Button).disabled = job.running
        if job.seq != self.shown:
            self.shown = job.seq  # rebuild the tables only for a new result (keeps the cursor)
            self.fill(job.report or {})

    shown = -1

    def fill(self, report: dict[str, Any]) -> None:
        plan = report.get("plan") or {}
        table = self.query_one("#by-collection", DataTable)
        table.clear()
        for row in plan.get("by_collection", []):
            table.add_row(
                row["collection"],
                row["workspace"] or "(none)",
                *(num(row.get(c, 0)) for c in COLUMNS),
            )
        invalid = self.query_one("#invalid", DataTable)
        invalid.clear()
        total = 0
        for code, entry in (plan.get("invalid_by_code") or {}).items():
            total += entry["count"]
            for sample in entry.get("samples", []):
                key = f"{invalid.row_count}\t{code}\t{sample['source_id']}"
                invalid.add_row(code, sample["source_id"], sample["message"], key=key)
            hidden = entry["count"] - len(entry.get("samples", []))
            if hidden > 0:
                invalid.add_row(code, f"… {hidden} more", REJECT_HELP.get(code, ""))
        tabs = self.query_one("#plan-tabs", TabbedContent)
        tabs.get_tab("tab-invalid").label = f"Invalid ({num(total)})"
        warnings = report.get("warnings_by_code") or {}
        tabs.get_tab("tab-warnings").label = f"Warnings ({num(sum(warnings.values()))})"
        self.query_one("#warnings", Static).update(warnings_text(report) if plan else "")
