"""The whole wizard on the real engine: demo store → embedded PostgreSQL, step by step.

connect → scan → test → apply schema → plan → migrate → compare, asserting what each screen
says, then what the database holds.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from rbmigrate.config import load
from rbmigrate.demo import write_demo
from rbmigrate.target.connection import connect, resolve_target
from rbmigrate.tui.app import WizardApp
from tests.tui.support import screen_text, settle

pytestmark = pytest.mark.slow
RECORDS = 60


def test_connect_to_compare_into_embedded(tmp_path: Path, workdir: Path) -> None:
    asyncio.run(flow(tmp_path, workdir))


async def flow(tmp_path: Path, workdir: Path) -> None:
    demo = write_demo(workdir / "chroma_data", RECORDS, embeddings="real")
    cfg = load(
        None,
        overrides={
            "target": {"db_url": f"embedded:{tmp_path / 'pg'}"},
            "run": {"data_dir": str(tmp_path / "data")},
        },
    )
    app = WizardApp(cfg, cursor_blink=False)  # real clock, real run ids, throttled repaints
    async with app.run_test(size=(100, 32)) as pilot:
        text = screen_text(app)
        assert "./chroma_data" in text and "✓ Chroma store" in text
        assert "Embedded PostgreSQL (local)" in text

        await pilot.click("#scan")
        await settle(pilot)
        text = screen_text(app)
        assert "✓ reasoning_memories" in text
        assert f"{RECORDS} records · 384-d · l2 · reasoningbank" in text

        await pilot.click("#test")
        await settle(pilot)
        text = screen_text(app)
        assert "PostgreSQL 16" in text and "schema public: missing" in text
        assert "F2 Connect ✓" in text

        await pilot.press("f3")
        await settle(pilot)
        assert "SET search_path" in screen_text(app)  # the rendered SQL
        await pilot.click("#apply")
        await settle(pilot)
        text = screen_text(app)
        assert "schema public: ready" in text and "✓ applied" in text

        await pilot.press("f4")
        await pilot.click("#run")
        await settle(pilot)
        text = screen_text(app)
        assert f"{RECORDS} records → {RECORDS} new · 0 changed · 0 same · 0 invalid" in text
        plan = app.state["plan"].report
        assert plan is not None
        traces = plan["plan"]["traces"]["new"]
        assert traces == demo.traces

        await pilot.press("f5")
        await pilot.click("#start")
        await settle(pilot)
        text = screen_text(app)
        assert "✓ Migration finished" in text
        assert f"{RECORDS} records = {RECORDS} inserted + 0 updated + 0 unchanged" in text
        assert "verify ✓ ok" in text
        run_id = app.state["migrate"].report["run_id"]  # type: ignore[index]
        assert (tmp_path / "data" / "runs" / run_id / "report.json").is_file()

        await pilot.press("f6")
        await pilot.click("#query")
        await pilot.press(*"fix a KeyError in the config loader", "enter")
        await settle(pilot)
        text = screen_text(app)
        assert "overlap@5 1.00" in text, text
        assert "F6 Compare ✓" in text

    resolved = resolve_target(cfg)
    try:
        with connect(resolved.dsn) as conn:
            memories = conn.execute("SELECT count(*) FROM memory_items").fetchone()
            in_traces = conn.execute("SELECT count(*) FROM reasoning_traces").fetchone()
            runs = conn.execute(
                "SELECT status FROM rbmigrate_runs WHERE run_id = %s", (run_id,)
            ).fetchall()
    finally:
        resolved.close()
    assert memories == (RECORDS,)
    assert in_traces == (demo.traces,)
    assert runs == [("ok",)]
