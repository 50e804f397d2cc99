"""No password or key on any screen: render every screen with real-looking secrets configured.

The database password goes in the db_url (as a flag would put it), the Supabase key comes
from the environment, another key is typed into the key field. Every rendered screen (text
and SVG) and the saved config are searched for all three.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, Select

from rbmigrate.config import load
from rbmigrate.demo import write_demo
from rbmigrate.tui.app import WizardApp
from rbmigrate.tui.screens.modals import ErrorScreen
from tests.support.pg import PASSWORD
from tests.tui.support import screen_text, settle

PASSWORD_SECRET = "S3cret-Pa55-XYZ"
ENV_KEY = "sb-FAKE-service-role-KEY-9f8e7d6c5b4a"
TYPED_KEY = "sb-typed-LITERAL-key-123456"
SECRETS = (PASSWORD_SECRET, ENV_KEY, TYPED_KEY, PASSWORD)


class Seen:
    """Everything the screens showed, to search at the end (and to say where a leak was)."""

    def __init__(self) -> None:
        self.views: dict[str, str] = {}

    async def grab(self, pilot: Pilot[Any], name: str) -> None:
        await pilot.pause()
        app = pilot.app
        self.views[name] = screen_text(app) + "\n" + app.export_screenshot()
        if isinstance(app.screen, ErrorScreen):  # a long error: keep it, then close it
            self.views[f"{name} (error)"] = app.screen.body
            await pilot.press("escape")
            await pilot.pause()

    def leaks(self) -> list[tuple[str, str]]:
        return [(name, s) for name, text in self.views.items() for s in SECRETS if s in text]


async def visit_everything(pilot: Pilot[Any], seen: Seen, tag: str) -> None:
    await pilot.click("#scan")
    await pilot.click("#test")
    await settle(pilot)
    await seen.grab(pilot, f"{tag}: connect, tested")
    for key, name in (("f3", "schema"), ("f4", "plan"), ("f5", "migrate"), ("f6", "compare")):
        await pilot.press(key)
        await settle(pilot)
        await seen.grab(pilot, f"{tag}: {name}")
    await pilot.press("f4")
    await pilot.click("#run")
    await settle(pilot)
    await seen.grab(pilot, f"{tag}: plan run")
    await pilot.press("f5")
    await pilot.click("#start")
    await settle(pilot)
    await seen.grab(pilot, f"{tag}: migrate run")
    await pilot.press("f6")
    await pilot.click("#query")
    await pilot.press(*"retry storms", "enter")
    await settle(pilot)
    await seen.grab(pilot, f"{tag}: compare run")
    pilot.app.open_report()  # type: ignore[attr-defined]
    await seen.grab(pilot, f"{tag}: report")
    await pilot.press("escape")
    await pilot.press("f1")
    await seen.grab(pilot, f"{tag}: help")
    await pilot.press("escape")


async def rest_target_with_typed_key(pilot: Pilot[Any], seen: Seen) -> None:
    await pilot.press("f2")
    await pilot.pause()
    screen = pilot.app.screen
    screen.query_one("#kind", Select).value = "rest"
    await pilot.pause()
    await seen.grab(pilot, "rest: key from env")
    screen.query_one("#supabase-key", Input).value = ""
    await pilot.click("#supabase-key")
    await pilot.press(*TYPED_KEY, "tab")
    await seen.grab(pilot, "rest: typed key")
    pilot.app.save_config()  # type: ignore[attr-defined]
    await seen.grab(pilot, "save config dialog")
    await pilot.click("#save")
    await seen.grab(pilot, "saved")


@pytest.fixture
def demo_dir(workdir: Path) -> Path:
    write_demo(workdir / "chroma_data", 30, embeddings="random")
    return workdir


def wizard(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> WizardApp:
    monkeypatch.setenv("SUPABASE_KEY", ENV_KEY)
    monkeypatch.setenv("SUPABASE_URL", "https://abcdefghijklmnop.supabase.co")
    cfg = load(
        None,
        overrides={
            "source": {"chroma_path": "./chroma_data"},
            "target": {"db_url": db_url},
            "run": {"data_dir": str(tmp_path / "data")},
        },
    )
    assert cfg.target.supabase_key == "env:SUPABASE_KEY"
    return WizardApp(cfg, cursor_blink=False, repaint_interval=0)


def test_wrong_password_never_shown(
    db_url: str, tmp_path: Path, demo_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server refuses the password: every error names the URL with *** instead."""
    bad = db_url.replace(f":{PASSWORD}@", f":{PASSWORD_SECRET}@")
    app = wizard(bad, tmp_path, monkeypatch)
    seen = Seen()

    async def run() -> None:
        async with app.run_test(size=(100, 32)) as pilot:
            await seen.grab(pilot, "start")
            assert ":***@" in seen.views["start"]
            await visit_everything(pilot, seen, "refused")
            assert "Authentication failed" in seen.views["refused: connect, tested"]
            await rest_target_with_typed_key(pilot, seen)

    asyncio.run(run())
    assert seen.leaks() == []
    saved = (demo_dir / "rbmigrate.toml").read_text()
    assert not [s for s in SECRETS if s in saved]
    assert 'supabase_key = "env:SUPABASE_KEY"' in saved  # the typed key: only its reference
    assert any(name.endswith("(error)") for name in seen.views)  # long errors were read too


def test_working_password_never_shown(
    db_url: str, tmp_path: Path, demo_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The password works (test, plan, reports): it still never reaches a screen."""
    app = wizard(db_url, tmp_path, monkeypatch)
    seen = Seen()

    async def run() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await visit_everything(pilot, seen, "accepted")
            assert "PostgreSQL 16" in seen.views["accepted: connect, tested"]

    asyncio.run(run())
    assert seen.leaks() == []
