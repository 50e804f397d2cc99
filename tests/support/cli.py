"""Run rbmigrate as users do: a real process, with its exit code, stdout and stderr."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> dict[str, Any]:
        return json.loads(self.out)


def cli_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RBMIGRATE_", "SUPABASE_"))}
    env.update({"RBMIGRATE_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1", "NO_COLOR": "1"})
    env.update(extra)
    return env


def run_cli(
    args: list[str], data_dir: Path, *, cwd: Path | None = None, timeout: float = 300, **env: str
) -> Result:
    proc = subprocess.run(
        [sys.executable, "-m", "rbmigrate", *args],
        capture_output=True,
        text=True,
        env=cli_env(data_dir, **env),
        cwd=cwd,
        timeout=timeout,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)
