"""run_command: the report always names the directory it was written to."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rbmigrate.config import Config
from rbmigrate.engine.api import run_command
from rbmigrate.engine.context import RunContext
from rbmigrate.errors import ExitCode, SourceError


def test_a_run_that_adopts_an_earlier_one_and_fails_reports_the_adopted_directory(
    tmp_path: Path,
) -> None:
    cfg = Config()
    cfg.run.data_dir = str(tmp_path)

    def body(ctx: RunContext, report: dict[str, Any]) -> ExitCode:
        ctx.adopt("20261124-000000-earlier")  # as choose_run does when resuming
        raise SourceError("the snapshot no longer matches the run being resumed")

    outcome = run_command(cfg, "migrate", body, run_id="20261124-000001-fresh")
    adopted = tmp_path / "runs" / "20261124-000000-earlier"
    assert outcome.exit_code == ExitCode.USAGE
    assert outcome.report["run_id"] == "20261124-000000-earlier"
    assert outcome.report["run_dir"] == str(adopted)
    written = json.loads((adopted / "report.json").read_text())
    assert written["run_dir"] == str(adopted) and written["status"] == "failed"
    assert not (tmp_path / "runs" / "20261124-000001-fresh").exists()
