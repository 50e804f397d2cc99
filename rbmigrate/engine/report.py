"""The run report (DESIGN §6): one JSON document per run, in the run directory and --report."""

from __future__ import annotations

from collections import Counter
from typing import Any

from rbmigrate import __version__
from rbmigrate.engine.context import RunContext

COUNT_KEYS = (
    "source_records",
    "inserted",
    "updated",
    "unchanged",
    "rejected",
    "skipped",
    "traces_inserted",
    "traces_updated",
    "warnings",
)


def new_report(ctx: RunContext) -> dict[str, Any]:
    return {
        "run_id": ctx.run_id,
        "command": ctx.command,
        "status": "ok",
        "rbmigrate_version": __version__,
        "run_dir": str(ctx.run_dir),
        "source": None,
        "target": None,
        "counts": {k: 0 for k in COUNT_KEYS},
        "plan": None,
        "verify": None,
        "rejects_by_code": {},
        "warnings_by_code": {},
        "rejects_file": None,
        "timings_s": {},
        "config": ctx.cfg.redacted(),
        "error": None,
    }


def counts_reconcile(counts: dict[str, int]) -> bool:
    """source_records = inserted + updated + unchanged + rejected + skipped, always."""
    parts = ("inserted", "updated", "unchanged", "rejected", "skipped")
    return counts["source_records"] == sum(counts[k] for k in parts)


def set_warnings(report: dict[str, Any], warnings: Counter[str] | dict[str, int]) -> None:
    clean = {k: int(v) for k, v in sorted(warnings.items()) if v}
    report["warnings_by_code"] = clean
    report["counts"]["warnings"] = sum(clean.values())
