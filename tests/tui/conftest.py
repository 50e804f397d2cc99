"""Fixtures for the wizard's tests: a clean environment and a working directory to run in."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.widgets import Button

from rbmigrate.config import Config


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No SUPABASE_* / RBMIGRATE_* from the developer's shell leaks into a test's config."""
    for name in list(os.environ):
        if name.startswith(("SUPABASE_", "RBMIGRATE_")):
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def no_button_flash(monkeypatch: pytest.MonkeyPatch) -> None:
    """A clicked button is drawn pressed for 0.2 s of wall time; a snapshot must not see it."""
    init = Button.__init__

    def without_flash(self: Button, *args: object, **kwargs: object) -> None:
        init(self, *args, **kwargs)  # type: ignore[arg-type]
        self.active_effect_duration = 0

    monkeypatch.setattr(Button, "__init__", without_flash)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty working directory (no chroma_data): the wizard offers a demo store."""
    monkeypatch.chdir(tmp_path)
    yield tmp_path


@pytest.fixture
def store_dir(workdir: Path) -> Path:
    """A working directory with ./chroma_data holding a (minimal) chroma.sqlite3."""
    store = workdir / "chroma_data"
    store.mkdir()
    conn = sqlite3.connect(store / "chroma.sqlite3")
    conn.execute("CREATE TABLE migrations (dir TEXT)")
    conn.commit()
    conn.close()
    return store


@pytest.fixture
def cfg(store_dir: Path) -> Config:
    """What `rbmigrate` with no config file finds: ./chroma_data into the embedded target."""
    config = Config()
    config.source.chroma_path = "./chroma_data"
    config.run.data_dir = str(store_dir.parent / "rbm-data")
    return config
