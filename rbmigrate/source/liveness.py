"""Is some other process using the source directory? (a live ReasoningBank server)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import psutil


@dataclass(frozen=True)
class UserProcess:
    pid: int
    name: str
    path: str


def processes_using(directory: Path) -> list[UserProcess]:
    """Processes other than this one with a file under `directory` open (Linux /proc)."""
    root = str(directory.resolve())
    found: list[UserProcess] = []
    me = os.getpid()
    for proc in psutil.process_iter(["pid", "name"]):
        if proc.info["pid"] == me:
            continue
        try:
            for f in proc.open_files():
                if f.path == root or f.path.startswith(root + os.sep):
                    found.append(UserProcess(proc.info["pid"], proc.info["name"] or "?", f.path))
                    break
        except (psutil.Error, OSError):
            continue
    return found
