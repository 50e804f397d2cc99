"""How `compare` looks on a terminal: the two result lists side by side, or the parity table."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text


def _cell(hit: dict[str, Any] | None, shared: set[str]) -> tuple[Text, str, str]:
    if hit is None:
        return Text(""), "", ""
    mark = "" if hit["id"] in shared else " ✗"
    title = Text(f"{hit['title'][:48]}{mark}", style="" if mark == "" else "yellow")
    return title, f"{hit['similarity']:.4f}", f"{hit['distance']:.4f}"


def print_compare(result: dict[str, Any], console: Console) -> None:
    chroma, target = result["chroma"], result["target"]
    shared = {h["id"] for h in chroma} & {h["id"] for h in target}
    table = Table(
        title=f"top {result['k']} for {result['query'][:60]!r}"
        + (f" in workspace {result['workspace']}" if result.get("workspace") else ""),
        caption="similarity on one scale (cosine); distance as each side reports it; "
        "✗ = only on this side",
    )
    table.add_column("#", justify="right")
    for side in ("Chroma", "target" + (" (exact)" if result.get("exact") else "")):
        table.add_column(side)
        table.add_column("sim", justify="right")
        table.add_column("dist", justify="right")
    for i in range(max(len(chroma), len(target))):
        left = _cell(chroma[i] if i < len(chroma) else None, shared)
        right = _cell(target[i] if i < len(target) else None, shared)
        table.add_row(str(i + 1), *left, *right)
    console.print(table)
    lat = result["latency_ms"]
    console.print(
        f"overlap@{result['k']}: {result['overlap_at_k']:.2f}   rank agreement: "
        f"{result['rank_agreement']:.2f}   latency: Chroma {lat['chroma']:.1f} ms, "
        f"target {lat['target']:.1f} ms",
        highlight=False,
    )


def print_parity(result: dict[str, Any], console: Console) -> None:
    table = Table(
        title=f"parity: recall@{result['k']} of the target against Chroma"
        + (" (exact search)" if result.get("exact") else " (HNSW index)")
    )
    for name, justify in (("workspace", "left"), ("queries", "right"), ("mean", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    table.add_column("min", justify="right")
    for ws, row in result["by_workspace"].items():
        table.add_row(
            ws,
            str(row["queries"]),
            f"{row['recall_at_k_mean']:.4f}",
            f"{row['recall_at_k_min']:.2f}",
        )
    table.add_row(
        Text("all", style="bold"),
        str(result["queries"]),
        f"{result['recall_at_k_mean']:.4f}",
        f"{result['recall_at_k_min']:.2f}",
    )
    console.print(table)
    lat = result["latency_ms"]
    console.print(
        f"latency p50/p95: Chroma {lat['chroma']['p50']:.1f}/{lat['chroma']['p95']:.1f} ms, "
        f"target {lat['target']['p50']:.1f}/{lat['target']['p95']:.1f} ms",
        highlight=False,
    )
    for w in result["worst"]:
        console.print(
            f"  worst: recall {w['recall_at_k']:.2f} [{w['workspace']}] {w['query'][:70]!r} "
            f"missing {', '.join(w['missing'][:3])}",
            highlight=False,
        )
