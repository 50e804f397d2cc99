"""`rbmigrate` with no config: the wizard starts prefilled, or offers the demo store."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from rbmigrate import cli
from rbmigrate.config import Config, load
from rbmigrate.tui import app as tui_app
from tests.tui.support import make_app, screen_text, settle


def test_no_command_runs_the_wizard(store_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI hands the wizard the loaded config and returns its exit code."""
    seen: list[Config] = []

    def fake(cfg: Config) -> int:
        seen.append(cfg)
        return 7

    monkeypatch.setattr(tui_app, "run_wizard", fake)
    assert cli.main([]) == 7
    assert seen[0].target.db_url == "embedded"


def test_prefills_chroma_data_and_embedded(store_dir: Path) -> None:
    cfg = load(None)
    app = make_app(cfg, offer_demo=None)
    assert cfg.source.chroma_path == "./chroma_data" and not app.offer_demo

    async def run() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            text = screen_text(app)
            assert "./chroma_data" in text and "✓ Chroma store" in text
            assert "Embedded PostgreSQL (local)" in text and "embedded" in text

    asyncio.run(run())


@pytest.mark.slow
def test_offers_and_writes_the_demo_store(workdir: Path) -> None:
    cfg = load(None)
    app = make_app(cfg, offer_demo=None, demo_records=30, demo_embeddings="random")
    assert app.offer_demo

    async def run() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            assert "Create demo store" in screen_text(app)
            await pilot.click("#yes")
            await settle(pilot)
            text = screen_text(app)
            assert "./chroma_data" in text and "✓ Chroma store" in text, text

    asyncio.run(run())
    assert (workdir / "chroma_data" / "chroma.sqlite3").is_file()
    assert cfg.source.chroma_path == "./chroma_data"


def test_quit_asks_while_a_migration_runs(cfg: Config) -> None:
    """ctrl+q during a migration asks first; stopping waits for the batch, then exits 130."""
    from tests.tui.scripted import ScriptedEngine
    from tests.tui.support import FakeClock, wait_for

    scripted = ScriptedEngine(FakeClock(), hold_at=40_000)
    app = make_app(cfg, scripted, clock=scripted.clock)

    async def run() -> Any:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("f5")
            await pilot.click("#start")
            await wait_for(pilot, scripted.reached)
            await pilot.press("ctrl+q")
            await pilot.pause()
            assert "A migration is running" in screen_text(app)
            await pilot.click("#no")
            await pilot.pause()
            assert app.state["migrate"].running
            await pilot.press("ctrl+q")
            await pilot.pause()
            await pilot.click("#yes")
            await settle(pilot)
        return app.return_value

    assert asyncio.run(run()) == 130
    assert not app.state["migrate"].running


def test_palette_runs_the_plan_and_opens_the_report(cfg: Config) -> None:
    from tests.tui.scripted import ScriptedEngine
    from tests.tui.support import FakeClock

    scripted = ScriptedEngine(FakeClock())
    app = make_app(cfg, scripted, clock=scripted.clock)

    async def run() -> None:
        async with app.run_test(size=(100, 32)) as pilot:
            await pilot.press("ctrl+p", *"run plan")
            await settle(pilot)
            await pilot.press("enter")
            await settle(pilot)
            assert app.current_mode == "plan"
            assert "99,948 new" in screen_text(app)
            await pilot.press("ctrl+p", *"open report")
            await settle(pilot)
            await pilot.press("enter")
            await pilot.pause()
            assert "runs/20250601-090000-plan1/report.json" in screen_text(app)

    asyncio.run(run())
    assert [name for name, _ in scripted.calls] == ["plan"]
