"""Which run is this? A new one, or the unfinished one for the same source and target.

A run is identified by its source fingerprint (where the source is, which collections and
workspaces, which target schema). While a run works it holds that fingerprint: over a direct
connection with a PostgreSQL advisory lock, over REST with a lease in its rbmigrate_runs row
(target.rest_writer). So a run marked `running` that nobody holds was killed and can resume,
and two runs can never write the same migration at once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rbmigrate.config import Config
from rbmigrate.errors import ConfigError, RunBusy
from rbmigrate.target.transport import TargetStore

__all__ = ["RunBusy", "RunChoice", "choose_run", "fingerprint", "try_lock", "unlock"]

RESUMABLE = ("running", "interrupted")


def fingerprint(cfg: Config) -> str:
    s = cfg.source
    if s.chroma_url:
        location = s.chroma_url
    elif s.chroma_path:
        location = str(Path(s.chroma_path).expanduser().resolve())
    else:
        location = ""
    key = {
        "location": location,
        "collections": sorted(s.collections),
        "workspaces": sorted(s.workspaces),
        "schema": cfg.target.schema,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]


def lock_key(fp: str) -> int:
    return int(fp[:15], 16)


@dataclass
class RunChoice:
    run_id: str | None  # None: start a new run
    resumed: bool
    message: str
    previous: tuple[str, str] | None = None  # (run id, status) of the latest run, when new


def try_lock(conn: Any, fp: str) -> bool:
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (lock_key(fp),)).fetchone()
    return bool(row and row[0])


def unlock(conn: Any, fp: str) -> None:
    conn.execute("SELECT pg_advisory_unlock(%s)", (lock_key(fp),))


def choose_run(store: TargetStore, fp: str, resume: str | None) -> RunChoice:
    """Explicit --resume RUN_ID, --resume (latest), or automatic resume of a killed run."""
    if not store.runs_table_exists():
        if resume not in (None, "latest"):
            raise ConfigError(
                f"run {resume} does not exist: the target has no rbmigrate tables yet."
            )
        return RunChoice(
            None, False, "no earlier run in this target; starting a new run" if resume else ""
        )
    if resume not in (None, "latest"):
        state = store.run_state(resume)
        if state is None:
            raise ConfigError(
                f"run {resume} does not exist in this target.",
                hint="rbmigrate --headless migrate --resume (without an id) picks the latest one.",
            )
        if state[0] == "ok":
            return RunChoice(None, False, f"run {resume} finished already; starting a new run")
        if state[1] != fp:
            raise ConfigError(
                f"run {resume} migrated another source, collection set or schema.",
                hint="resume it with the same --chroma-path/--chroma-url, --collection and --schema.",
            )
        return RunChoice(resume, True, f"resuming run {resume}")
    row = store.latest_run(fp)
    if row and row[1] in RESUMABLE:
        return RunChoice(row[0], True, f"resuming unfinished run {row[0]}")
    if resume == "latest":
        return RunChoice(
            None, False, "nothing to resume for this source and target; starting a new run", row
        )
    return RunChoice(None, False, "", row)
