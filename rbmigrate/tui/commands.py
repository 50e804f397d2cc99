"""Our command-palette commands (ctrl+p): jump to a step, run the plan, open the report, theme."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import TYPE_CHECKING, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:
    from rbmigrate.tui.app import WizardApp

Command = tuple[str, str, Callable[[], object]]


class WizardCommands(Provider):
    """The wizard's own commands, next to Textual's system commands."""

    @property
    def wizard(self) -> WizardApp:
        return cast("WizardApp", self.app)

    def commands(self) -> Iterator[Command]:
        app = self.wizard
        for step, what in (
            ("connect", "source and target"),
            ("schema", "what the target has, the SQL, apply"),
            ("plan", "the dry run"),
            ("migrate", "progress, pause, cancel, result"),
            ("compare", "queries on both sides"),
        ):
            yield f"Go to {step.title()}", what, partial(app.action_goto, step)
        yield "Run plan", "dry run: what a migration would do", app.run_plan
        yield "Run doctor", "preflight: every check a migration needs (F7)", app.run_doctor
        yield "Open report", "the latest run's report.json", app.open_report
        yield "Change theme", "pick a colour theme", app.search_themes
        yield "Save config", "write rbmigrate.toml (secrets as env references)", app.save_config
        yield "Help", "what this screen does (F1)", app.action_help

    async def discover(self) -> Hits:
        for name, help_text, callback in self.commands():
            yield DiscoveryHit(name, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, help_text, callback in self.commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), callback, help=help_text)
