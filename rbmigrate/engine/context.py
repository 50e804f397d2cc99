"""One run: its id, its directory, its event sink, its cancel token and its timings."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from rbmigrate.config import Config
from rbmigrate.events import (
    Event,
    EventSink,
    Level,
    LogMessage,
    NullSink,
    PhaseFinished,
    PhaseStarted,
    Progress,
    RunControl,
    RunStarted,
    TeeSink,
)


def new_run_id(now: datetime | None = None) -> str:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{secrets.token_hex(3)}"


def private_file(path: Path, mode: str = "w") -> IO[str]:
    """Open a run file readable by its owner only (reports and rejects hold user data)."""
    fd = os.open(
        path, os.O_WRONLY | os.O_CREAT | (os.O_APPEND if "a" in mode else os.O_TRUNC), 0o600
    )
    os.chmod(path, 0o600)
    return os.fdopen(fd, mode, encoding="utf-8")


class RunLogSink:
    """run.log: phases and messages with timestamps (progress is too chatty to keep)."""

    def __init__(self, path: Path) -> None:
        self.fh = private_file(path, "a")

    def emit(self, event: Event) -> None:
        if isinstance(event, Progress):
            return
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        payload = {k: v for k, v in event.__dict__.items() if k != "report"}
        with contextlib.suppress(OSError):  # a full disk must not turn logging into a crash
            self.fh.write(f"{stamp} {type(event).__name__} {json.dumps(payload, default=str)}\n")
            self.fh.flush()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.fh.close()


@dataclass
class RunContext:
    cfg: Config
    command: str
    run_id: str
    run_dir: Path
    sink: EventSink = field(default_factory=NullSink)
    control: RunControl = field(default_factory=RunControl)
    clock: Callable[[], float] = time.monotonic
    timings: dict[str, float] = field(default_factory=dict)
    _log: RunLogSink | None = None

    @classmethod
    def create(
        cls,
        cfg: Config,
        command: str,
        *,
        sink: EventSink | None = None,
        control: RunControl | None = None,
        run_id: str | None = None,
        clock: Callable[[], float] | None = None,
    ) -> RunContext:
        run_id = run_id or new_run_id()
        run_dir = cfg.data_dir() / "runs" / run_id
        run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(run_dir, 0o700)
        log = RunLogSink(run_dir / "run.log")
        ctx = cls(
            cfg=cfg,
            command=command,
            run_id=run_id,
            run_dir=run_dir,
            sink=TeeSink(sink or NullSink(), log),
            control=control or RunControl(),
            clock=clock or time.monotonic,
            _log=log,
        )
        ctx.sink.emit(RunStarted(run_id=run_id, command=command, run_dir=str(run_dir)))
        return ctx

    def adopt(self, run_id: str) -> None:
        """Continue an earlier run: its id, its directory (snapshot, trace index, rejects)."""
        if run_id == self.run_id:
            return
        old_dir = self.cfg.data_dir() / "runs" / run_id
        old_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self._log is not None:
            self._log.close()
        fresh = self.run_dir
        self.run_id, self.run_dir = run_id, old_dir
        log = RunLogSink(old_dir / "run.log")
        sinks = getattr(self.sink, "sinks", ())
        self.sink = TeeSink(*[s for s in sinks if s is not self._log], log)
        self._log = log
        with contextlib.suppress(OSError):
            (fresh / "run.log").unlink()
            fresh.rmdir()
        self.sink.emit(RunStarted(run_id=run_id, command=self.command, run_dir=str(old_dir)))

    def log(self, level: Level, text: str, code: str | None = None) -> None:
        self.sink.emit(LogMessage(level, text, code))

    @contextlib.contextmanager
    def phase(
        self, name: str, total: int | None = None, unit: str = "records"
    ) -> Iterator[list[int]]:
        """Time a phase; yields a one-item list the body may set to the count it handled."""
        start = self.clock()
        done = [0]
        self.sink.emit(PhaseStarted(name, total, unit))
        try:
            yield done
        finally:
            elapsed = self.clock() - start
            self.timings[name] = round(self.timings.get(name, 0.0) + elapsed, 3)
            self.sink.emit(PhaseFinished(name, done[0], round(elapsed, 3)))

    def progress(self, phase: str, done: int, total: int | None, unit: str = "records") -> None:
        self.sink.emit(Progress(phase, done, total, unit))

    def checkpoint(self) -> None:
        self.control.checkpoint(resume_hint=self.resume_hint())

    def resume_hint(self) -> str:
        return f"resume with: rbmigrate --headless migrate --resume {self.run_id}"

    def close(self) -> None:
        if self._log is not None:
            self._log.close()

    def write_json(self, name: str, data: Any) -> Path:
        path = self.run_dir / name
        with private_file(path) as fh:
            json.dump(data, fh, indent=2, default=str)
            fh.write("\n")
        return path
