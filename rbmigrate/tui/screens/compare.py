"""Step 5, Compare: one query on Chroma and on the target side by side, or a parity run.

Scores are cosine similarity on both sides (the engine converts Chroma's distances), so the
columns read on one scale; a ✓ marks a result the other side also returned.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.table import Table
from rich.text import Text
from textual.containers import Horizontal, Vertical
from textual.suggester import SuggestFromList
from textual.widget import Widget
from textual.widgets import Button, Input, Label, Static

from rbmigrate.tui.fmt import num
from rbmigrate.tui.screens.base import WizardScreen
from rbmigrate.tui.screens.connect import error_text
from rbmigrate.tui.state import JobState
from rbmigrate.tui.widgets import blink_off, status


def hits_table(hits: list[dict[str, Any]], other: list[dict[str, Any]]) -> Table:
    theirs = {h["id"] for h in other}
    table = Table(box=None, expand=True, padding=(0, 1), show_edge=False)
    table.add_column("#", justify="right", no_wrap=True, header_style="bold")
    table.add_column("title", ratio=1, no_wrap=True, overflow="ellipsis", header_style="bold")
    table.add_column("sim", justify="right", no_wrap=True, header_style="bold")
    table.add_column("both", no_wrap=True, header_style="bold")
    for hit in hits:
        shared = hit["id"] in theirs
        table.add_row(
            str(hit["rank"]),
            str(hit.get("title") or hit.get("source_id")),
            f"{hit['similarity']:.3f}",
            Text("✓", style="green") if shared else Text("✗", style="red"),
        )
    return table


def summary_text(job: JobState) -> tuple[Text | str, str]:
    if job.running:
        phase = job.progress.current or "starting"
        return f"Running {phase}… (the first query loads the model)", "busy"
    if job.outcome is None:
        return "Type a query and press Enter: top-k from Chroma and from the target.", ""
    if job.error and not (job.report or {}).get("compare"):
        return error_text(job), "error"
    result: dict[str, Any] = (job.report or {}).get("compare") or {}
    if "by_workspace" in result:
        text = Text(f"Parity over {num(result['queries'])} queries: ", style="bold")
        text.append(
            f"recall@{result['k']} mean {result['recall_at_k_mean']:.3f} · "
            f"min {result['recall_at_k_min']:.3f}"
        )
    else:
        text = Text(f"overlap@{result.get('k')} {result.get('overlap_at_k', 0):.2f}", style="bold")
        text.append(f" · rank agreement {result.get('rank_agreement', 0):.2f}")
    latency = result.get("latency_ms") or {}
    chroma, target = latency.get("chroma"), latency.get("target")
    if isinstance(chroma, dict) and isinstance(target, dict):
        text.append(
            f"\nlatency p50/p95 ms: Chroma {chroma['p50']:.1f}/{chroma['p95']:.1f} · "
            f"Supabase {target['p50']:.1f}/{target['p95']:.1f}"
        )
    elif chroma is not None and target is not None:
        text.append(f" · latency Chroma {chroma:.1f} ms · Supabase {target:.1f} ms")
    if job.error:
        text.append("\n")
        text.append_text(error_text(job))
        return text, "error"
    return text, "ok"


def parity_table(result: dict[str, Any]) -> Table:
    table = Table(box=None, expand=True, padding=(0, 1), show_edge=False)
    for name in ("workspace", "queries", "recall mean", "recall min"):
        table.add_column(
            name, header_style="bold", justify="left" if name == "workspace" else "right"
        )
    for ws, row in result.get("by_workspace", {}).items():
        table.add_row(
            ws,
            num(row["queries"]),
            f"{row['recall_at_k_mean']:.3f}",
            f"{row['recall_at_k_min']:.3f}",
        )
    for worst in result.get("worst", [])[:3]:
        table.add_row(Text(f"worst: {str(worst.get('query', ''))[:60]}", style="yellow"))
    return table


class CompareScreen(WizardScreen):
    STEP = "compare"
    JOBS = ("compare", "plan")

    def body(self) -> Iterable[Widget]:
        with Horizontal(id="compare-query", classes="form"):
            yield blink_off(
                Input(
                    placeholder="a query, e.g. KeyError in the config loader",
                    id="query",
                    compact=True,
                ),
                self.app,
            )
            yield Button("Search", id="search", variant="primary", compact=True)
        with Horizontal(id="compare-options", classes="form"):
            yield Label("workspace")
            yield blink_off(Input(placeholder="all", id="workspace", compact=True), self.app)
            yield Label("k")
            yield blink_off(Input("5", type="integer", id="k", compact=True), self.app)
            yield Label("parity queries")
            yield blink_off(Input("20", type="integer", id="parity-n", compact=True), self.app)
            yield Button("Parity", id="parity", compact=True)
        yield Static(id="compare-summary", classes="summary")
        with Horizontal(id="compare-results"):
            with Vertical(classes="pane") as chroma:
                chroma.border_title = "Chroma"
                yield Static(id="chroma-hits")
            with Vertical(classes="pane") as target:
                target.border_title = "Supabase"
                yield Static(id="target-hits")
        yield Static(id="parity-result")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.search()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "search":
            self.search()
        elif event.button.id == "parity":
            self.search(parity=True)

    def number(self, widget_id: str, default: int) -> int:
        try:
            return int(self.query_one(widget_id, Input).value)
        except ValueError:
            return default

    def search(self, *, parity: bool = False) -> None:
        query = self.query_one("#query", Input).value.strip()
        if not parity and not query:
            self.notify("Type a query first.", severity="warning")
            return
        self.wizard.compare(
            query=None if parity else query,
            k=self.number("#k", 5),
            workspace=self.query_one("#workspace", Input).value.strip() or None,
            parity=self.number("#parity-n", 20) if parity else None,
        )

    def sync(self) -> None:
        state = self.wizard.state
        job = state["compare"]
        status(self.query_one("#compare-summary", Static), *summary_text(job))
        self.query_one("#search", Button).disabled = job.running
        self.query_one("#parity", Button).disabled = job.running
        result: dict[str, Any] = (job.report or {}).get("compare") or {}
        is_parity = "by_workspace" in result
        self.query_one("#compare-results").display = not is_parity
        self.query_one("#parity-result").display = is_parity
        if is_parity:
            self.query_one("#parity-result", Static).update(parity_table(result))
        else:
            chroma, target = result.get("chroma", []), result.get("target", [])
            self.query_one("#chroma-hits", Static).update(hits_table(chroma, target))
            self.query_one("#target-hits", Static).update(hits_table(target, chroma))
        plan = (state["plan"].report or {}).get("plan") or {}
        known = sorted({r["workspace"] for r in plan.get("by_collection", []) if r["workspace"]})
        if known:
            self.query_one("#workspace", Input).suggester = SuggestFromList(known)
