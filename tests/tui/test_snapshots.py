"""Snapshots of every screen in its meaningful states, at 100×32 and 80×24.

The engine is scripted (tests/tui/scripted.py): fixed reports, a fake clock, fixed run ids,
so what differs between runs is only what the wizard draws. Update with
`pytest tests/tui --snapshot-update`, then read every changed SVG before committing it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, Select

from rbmigrate.config import Config
from tests.tui import canned
from tests.tui.scripted import ScriptedEngine
from tests.tui.support import FakeClock, make_app, settle, wait_for

WIDE = (100, 32)
SMALL = (80, 24)
Before = Callable[[Pilot[Any]], Awaitable[None]]
Snap = Callable[..., bool]


def engine(**kw: Any) -> ScriptedEngine:
    return ScriptedEngine(FakeClock(), **kw)


def check(
    snap_compare: Snap, cfg: Config, size: tuple[int, int], before: Before, **kw: Any
) -> None:
    scripted = kw.pop("engine", None) or engine()
    app = make_app(cfg, scripted, clock=scripted.clock, **kw)
    assert snap_compare(app, terminal_size=size, run_before=before)


async def connected(pilot: Pilot[Any]) -> None:
    await pilot.click("#scan")
    await pilot.click("#test")
    await settle(pilot)


async def goto(pilot: Pilot[Any], key: str) -> None:
    await pilot.press(key)
    await settle(pilot)


# --- Connect ------------------------------------------------------------------------------


def test_connect_offers_demo_store_80x24(snap_compare: Snap, workdir: Any) -> None:
    """No config and no ./chroma_data: the wizard offers to write the demo store."""

    async def before(pilot: Pilot[Any]) -> None:
        await pilot.pause()

    check(snap_compare, Config(), SMALL, before, offer_demo=None)


def test_connect_prefilled_80x24(snap_compare: Snap, cfg: Config) -> None:
    """./chroma_data exists: source prefilled and valid, embedded target, nothing run yet."""

    async def before(pilot: Pilot[Any]) -> None:
        await pilot.pause()

    check(snap_compare, cfg, SMALL, before)


@pytest.mark.parametrize("size", [WIDE, SMALL], ids=["100x32", "80x24"])
def test_connect_scanned_and_tested(snap_compare: Snap, cfg: Config, size: tuple[int, int]) -> None:
    check(snap_compare, cfg, size, connected)


def test_connect_errors_80x24(snap_compare: Snap, cfg: Config) -> None:
    """A path that is not a store, and a database that refuses the password (masked)."""
    cfg.target.db_url = "postgresql://postgres:S3cret-Pa55-XYZ@db.example.supabase.co:5432/postgres"
    shown = "postgresql://postgres:***@db.example.supabase.co:5432/postgres"
    scripted = engine(test=lambda run_id: canned.auth_failed(run_id, shown))

    async def before(pilot: Pilot[Any]) -> None:
        field = pilot.app.screen.query_one("#source", Input)
        field.value = "./chroma_dta"
        await pilot.click("#test")
        await settle(pilot)

    check(snap_compare, cfg, SMALL, before, engine=scripted)


def test_connect_supabase_rest_100x32(snap_compare: Snap, cfg: Config) -> None:
    """REST target: URL and a key that comes from the environment (shown as its reference)."""
    cfg.target.supabase_url = "https://abcdefghijklmnop.supabase.co"
    cfg.target.supabase_key = "env:SUPABASE_KEY"

    async def before(pilot: Pilot[Any]) -> None:
        pilot.app.screen.query_one("#kind", Select).value = "rest"
        await settle(pilot)

    check(snap_compare, cfg, WIDE, before)


# --- Schema -------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [WIDE, SMALL], ids=["100x32", "80x24"])
def test_schema_missing(snap_compare: Snap, cfg: Config, size: tuple[int, int]) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        await connected(pilot)
        await goto(pilot, "f3")

    check(snap_compare, cfg, size, before)


def test_schema_applied_100x32(snap_compare: Snap, cfg: Config) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        await connected(pilot)
        await goto(pilot, "f3")
        await pilot.click("#apply")
        await settle(pilot)

    check(snap_compare, cfg, WIDE, before)


def test_schema_incompatible_80x24(snap_compare: Snap, cfg: Config) -> None:
    scripted = engine(test=lambda run_id: canned.test_target(run_id, "incompatible"))

    async def before(pilot: Pilot[Any]) -> None:
        await goto(pilot, "f3")
        await pilot.click("#check")
        await settle(pilot)

    check(snap_compare, cfg, SMALL, before, engine=scripted)


# --- Plan ---------------------------------------------------------------------------------


def test_plan_empty_80x24(snap_compare: Snap, cfg: Config) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        await goto(pilot, "f4")

    check(snap_compare, cfg, SMALL, before)


def test_plan_filled_100x32(snap_compare: Snap, cfg: Config) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        await goto(pilot, "f4")
        await pilot.click("#run")
        await settle(pilot)

    check(snap_compare, cfg, WIDE, before)


def test_plan_invalid_80x24(snap_compare: Snap, cfg: Config) -> None:
    """Too many rejects: the error, and the Invalid tab with samples by code."""
    scripted = engine(plan=lambda run_id: canned.plan(run_id, invalid=True))

    async def before(pilot: Pilot[Any]) -> None:
        await goto(pilot, "f4")
        await pilot.click("#run")
        await settle(pilot)
        await pilot.click("#plan-tabs Tab#--content-tab-tab-invalid")
        await pilot.pause()

    check(snap_compare, cfg, SMALL, before, engine=scripted)


def test_plan_record_100x32(snap_compare: Snap, cfg: Config) -> None:
    """Selecting an invalid record: the source record beside the rule that rejects it."""
    scripted = engine(plan=lambda run_id: canned.plan(run_id, invalid=True))

    async def before(pilot: Pilot[Any]) -> None:
        await goto(pilot, "f4")
        await pilot.click("#run")
        await settle(pilot)
        await pilot.click("#plan-tabs Tab#--content-tab-tab-invalid")
        await pilot.pause()
        pilot.app.screen.query_one("#invalid").focus()
        await pilot.press("enter")
        await settle(pilot)

    check(snap_compare, cfg, WIDE, before, engine=scripted)


# --- Migrate ------------------------------------------------------------------------------


def test_migrate_ready_80x24(snap_compare: Snap, cfg: Config) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        await goto(pilot, "f5")

    check(snap_compare, cfg, SMALL, before)


def running(scripted: ScriptedEngine) -> Before:
    async def before(pilot: Pilot[Any]) -> None:
        await goto(pilot, "f5")
        await pilot.click("#start")
        await wait_for(pilot, scripted.reached)

    return before


@pytest.mark.parametrize("size", [WIDE, SMALL], ids=["100x32", "80x24"])
def test_migrate_running(snap_compare: Snap, cfg: Config, size: tuple[int, int]) -> None:
    """40% written at 5,000 records/s on the fake clock: the ETA is fixed at 0:12."""
    scripted = engine(hold_at=40_000)
    check(snap_compare, cfg, size, running(scripted), engine=scripted)


def test_migrate_paused_100x32(snap_compare: Snap, cfg: Config) -> None:
    scripted = engine(hold_at=40_000)

    async def before(pilot: Pilot[Any]) -> None:
        await running(scripted)(pilot)
        await pilot.click("#pause")
        await pilot.pause()

    check(snap_compare, cfg, WIDE, before, engine=scripted)


@pytest.mark.parametrize("size", [WIDE, SMALL], ids=["100x32", "80x24"])
def test_migrate_finished(snap_compare: Snap, cfg: Config, size: tuple[int, int]) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        await goto(pilot, "f5")
        await pilot.click("#start")
        await settle(pilot)

    check(snap_compare, cfg, size, before)


def test_migrate_cancelled_80x24(snap_compare: Snap, cfg: Config) -> None:
    """Cancel stops between batches and says how to resume."""
    scripted = engine(hold_at=40_000)

    async def before(pilot: Pilot[Any]) -> None:
        await running(scripted)(pilot)
        await pilot.click("#cancel")
        await settle(pilot)

    check(snap_compare, cfg, SMALL, before, engine=scripted)


def test_quit_while_migrating_80x24(snap_compare: Snap, cfg: Config) -> None:
    scripted = engine(hold_at=40_000)

    async def before(pilot: Pilot[Any]) -> None:
        await running(scripted)(pilot)
        await pilot.press("ctrl+q")
        await pilot.pause()

    check(snap_compare, cfg, SMALL, before, engine=scripted)


def test_step_bar_follows_migration_100x32(snap_compare: Snap, cfg: Config) -> None:
    """Leaving the Migrate screen leaves the run going; the step bar shows how far it is."""
    scripted = engine(hold_at=40_000)

    async def before(pilot: Pilot[Any]) -> None:
        await running(scripted)(pilot)
        await pilot.press("f2")
        await pilot.pause()

    check(snap_compare, cfg, WIDE, before, engine=scripted)


# --- Compare ------------------------------------------------------------------------------


async def searched(pilot: Pilot[Any]) -> None:
    await goto(pilot, "f6")
    await pilot.click("#query")
    await pilot.press(*"KeyError in the config loader", "enter")
    await settle(pilot)


def test_compare_empty_80x24(snap_compare: Snap, cfg: Config) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        await goto(pilot, "f6")

    check(snap_compare, cfg, SMALL, before)


@pytest.mark.parametrize("size", [WIDE, SMALL], ids=["100x32", "80x24"])
def test_compare_results(snap_compare: Snap, cfg: Config, size: tuple[int, int]) -> None:
    check(snap_compare, cfg, size, searched)


def test_compare_parity_100x32(snap_compare: Snap, cfg: Config) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        await goto(pilot, "f6")
        await pilot.click("#parity")
        await settle(pilot)

    check(snap_compare, cfg, WIDE, before)


def test_compare_error_80x24(snap_compare: Snap, cfg: Config) -> None:
    check(snap_compare, cfg, SMALL, searched, engine=engine(compare=canned.compare_no_schema))


# --- Help, palette, errors ------------------------------------------------------------------


def test_help_80x24(snap_compare: Snap, cfg: Config) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        await goto(pilot, "f5")
        await pilot.press("f1")
        await pilot.pause()

    check(snap_compare, cfg, SMALL, before)


def test_doctor_panel_100x32(snap_compare: Snap, cfg: Config) -> None:
    """F7: every preflight check with what to do; the failed one first in the summary."""

    async def before(pilot: Pilot[Any]) -> None:
        await pilot.press("f7")
        await settle(pilot)

    check(snap_compare, cfg, WIDE, before)


def test_command_palette_100x32(snap_compare: Snap, cfg: Config) -> None:
    async def before(pilot: Pilot[Any]) -> None:
        await pilot.press("ctrl+p")
        await pilot.press(*"go")
        await settle(pilot)

    check(snap_compare, cfg, WIDE, before)


def test_long_error_modal_80x24(snap_compare: Snap, cfg: Config) -> None:
    """An error with a traceback opens a modal whose text can be selected and copied."""
    trace = (
        "Traceback (most recent call last):\n"
        '  File "rbmigrate/tui/adapters.py", line 118, in inspect_record\n'
        "    for page in session.source.reader.pages(\n"
        "KeyError: 'memory_data'"
    )

    async def before(pilot: Pilot[Any]) -> None:
        pilot.app.show_error(  # type: ignore[attr-defined]
            {
                "title": "Internal error",
                "message": "unexpected KeyError: 'memory_data'",
                "hint": "this is a bug in the wizard; the headless commands are not affected.\n"
                + trace,
            }
        )
        await pilot.pause()

    check(snap_compare, cfg, SMALL, before)
