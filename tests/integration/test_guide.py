"""docs/MIGRATION_GUIDE.md cannot rot: its bash blocks run top to bottom, their output is checked."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from rbmigrate.records.codes import Reject, Warn
from tests.support.cli import cli_env

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "MIGRATION_GUIDE.md"
BLOCK = re.compile(r"^```bash\n(.*?)^```\n((?:<!-- expect: .*? -->\n)*)", re.M | re.S)


def runnable_blocks() -> list[tuple[str, list[str]]]:
    text = GUIDE.read_text(encoding="utf-8")
    return [
        (script, re.findall(r"<!-- expect: (.*?) -->", expects))
        for script, expects in BLOCK.findall(text)
    ]


def test_guide_runs_top_to_bottom(tmp_path: Path, db_url: str, data_dir: Path):
    env = cli_env(data_dir, SUPABASE_DB_URL=db_url)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    blocks = runnable_blocks()
    assert len(blocks) >= 8
    for script, expects in blocks:
        proc = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0, (script, output[-3000:])
        assert "Traceback" not in output
        for expected in expects:
            assert expected in output, (script, expected, output[-3000:])


def test_guide_covers_the_steps_and_every_record_code():
    text = GUIDE.read_text(encoding="utf-8")
    commands = " ".join(script for script, _ in runnable_blocks())
    for step in ("doctor", "bootstrap", "plan", "migrate", "verify", "compare", "rollback"):
        assert f"--headless {step}" in commands
    for code in [*Reject, *Warn]:
        assert f"`{code.value}`" in text, code
    for topic in ("Resuming", "Rollback", "Workspace isolation", "Security", "Cost", "tuning"):
        assert topic in text
