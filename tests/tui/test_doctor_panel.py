"""The Doctor panel on the real engine: F7 runs every check against a real store and a real
PostgreSQL and shows each with its status; a wrong password shows as a failed check with
its advice, masked."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from rbmigrate.config import load
from rbmigrate.demo import write_demo
from rbmigrate.tui.app import WizardApp
from rbmigrate.tui.screens.doctor import DoctorScreen
from tests.support.pg import PASSWORD
from tests.tui.support import screen_text, settle

pytestmark = pytest.mark.slow


def test_doctor_panel_on_real_parts(tmp_path: Path, workdir: Path, db_url: str) -> None:
    asyncio.run(panel(tmp_path, workdir, db_url))


async def panel(tmp_path: Path, workdir: Path, db_url: str) -> None:
    write_demo(workdir / "chroma_data", 30, embeddings="random")
    cfg = load(None, overrides={"target": {"db_url": db_url}, "run": {"data_dir": str(tmp_path)}})
    app = WizardApp(cfg, cursor_blink=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("f7")
        await settle(pilot)
        assert isinstance(app.screen, DoctorScreen)
        text = screen_text(app)
        for name in ("source", "target reachable", "credentials", "embedding model"):
            assert f"✓  {name}" in text, (name, text)
        assert "!  versions" in text and "pgvector 0.6.2" in text  # a warning: below 0.8
        assert PASSWORD not in text

        await pilot.press("escape")
        app.cfg.target.db_url = db_url.replace(PASSWORD, "not-the-password")
        await pilot.press("f7")
        await settle(pilot)
        assert isinstance(app.screen, DoctorScreen)
        text = screen_text(app)
        assert "✗ " in text and "failed" in text
        assert "not-the-password" not in text and "***" in text
