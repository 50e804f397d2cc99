"""The plain parts of the wizard: progress model, message coalescing, masking, validation."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from rbmigrate.config import Config
from rbmigrate.events import (
    LogMessage,
    PhaseFinished,
    PhaseStarted,
    Progress,
    RunFinished,
    RunStarted,
)
from rbmigrate.tui.app import WizardApp
from rbmigrate.tui.fmt import duration, merge_dsn, shown_target
from rbmigrate.tui.messages import JobEvent
from rbmigrate.tui.progress import RunProgress
from rbmigrate.tui.screens.connect import check_source


def test_progress_rates_and_eta_follow_the_event_times() -> None:
    run = RunProgress()
    run.apply(RunStarted("r1", "migrate", "/runs/r1"), 100.0)
    run.apply(PhaseStarted("write", 10_000), 100.0)
    run.apply(Progress("write", 2_500, 10_000), 105.0)
    write = run.phases["write"]
    assert write.rate(105.0) == 500.0
    assert write.eta(105.0) == 15.0
    assert run.elapsed(105.0) == 5.0
    run.apply(PhaseFinished("write", 10_000, 20.0), 120.0)
    run.apply(RunFinished({"status": "interrupted"}), 121.0)
    assert run.overall() < 1.0  # a stopped run keeps the share it reached
    assert run.eta(130.0) is None and run.elapsed(130.0) == 21.0
    run.apply(RunFinished({"status": "ok"}), 122.0)
    assert run.overall() == 1.0


def test_log_keeps_new_lines_for_each_view() -> None:
    run = RunProgress()
    run.apply(RunStarted("r1", "migrate", "/runs/r1"), 0.0)
    run.apply(LogMessage("warning", "24 parents missing", "parent_not_found"), 3.0)
    seen = run.logged
    run.apply(LogMessage("info", "later"), 4.0)
    assert [line.text for line in run.new_lines(seen)] == ["later"]
    assert [line.at for line in run.new_lines(0)] == [0.0, 3.0, 4.0]


def test_progress_messages_replace_older_ones_of_the_same_phase() -> None:
    older = JobEvent("migrate", Progress("write", 10, 100), 1.0)
    assert older.can_replace(JobEvent("migrate", Progress("write", 20, 100), 2.0))
    assert not older.can_replace(JobEvent("migrate", Progress("scan", 20, 100), 2.0))
    assert not older.can_replace(JobEvent("plan", Progress("write", 20, 100), 2.0))
    assert not older.can_replace(JobEvent("migrate", PhaseFinished("write", 100), 2.0))
    assert not JobEvent("migrate", LogMessage("info", "x"), 1.0).can_replace(older)


class CountingApp(WizardApp):
    """Counts the JobEvents the App handles (Textual also calls WizardApp's handler)."""

    handled = 0

    def on_job_event(self, message: JobEvent) -> None:
        self.handled += 1


def test_a_burst_of_progress_is_handled_as_one(cfg: Config) -> None:
    """500 progress messages queued at once reach the App as far fewer."""
    app = CountingApp(cfg, cursor_blink=False, offer_demo=False)

    async def run() -> None:
        async with app.run_test() as pilot:
            app.state["migrate"].start({})
            for done in range(1, 501):
                app.post_message(JobEvent("migrate", Progress("write", done, 500), float(done)))
            await pilot.pause()
            await pilot.pause()

    asyncio.run(run())
    assert 1 <= app.handled < 50
    assert app.state["migrate"].progress.phases["write"].done == 500


@pytest.mark.parametrize(
    ("typed", "real", "meant"),
    [
        ("postgresql://u:***@h/db", "postgresql://u:pw@h/db", "postgresql://u:pw@h/db"),
        ("postgresql://u:***@other/db", "postgresql://u:pw@h/db", "postgresql://u:pw@other/db"),
        ("postgresql://u:new@h/db", "postgresql://u:pw@h/db", "postgresql://u:new@h/db"),
        ("env:SUPABASE_DB_URL", "postgresql://u:pw@h/db", "env:SUPABASE_DB_URL"),
        ("embedded:/tmp/pg", "embedded", "embedded:/tmp/pg"),
    ],
)
def test_editing_a_masked_url_keeps_the_password(typed: str, real: str, meant: str) -> None:
    assert merge_dsn(typed, real) == meant


def test_targets_show_masked() -> None:
    assert shown_target("postgresql://u:pw@h/db") == "postgresql://u:***@h/db"
    assert shown_target("env:SUPABASE_DB_URL") == "env:SUPABASE_DB_URL"


def test_source_field_checks_as_you_type(store_dir: Path) -> None:
    assert check_source("./chroma_data")[1] == "ok"
    assert check_source("http://127.0.0.1:8000")[1] == "ok"
    assert check_source("")[1] == ""
    message, kind = check_source("./nowhere")
    assert kind == "error" and "does not exist" in message
    (store_dir.parent / "file.txt").write_text("x")
    assert check_source("file.txt")[1] == "error"


def test_durations() -> None:
    assert duration(None) == "–"
    assert duration(75) == "1:15"
    assert duration(3725) == "1:02:05"
