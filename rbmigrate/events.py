"""What the engine tells its caller while it works: plain dataclasses through a sink.

The engine never knows who listens: the headless renderer prints them, the TUI turns them
into Textual messages, tests collect them in a list.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from rbmigrate.errors import Interrupted

Level = Literal["info", "warning", "error"]


@dataclass(frozen=True)
class RunStarted:
    run_id: str
    command: str
    run_dir: str


@dataclass(frozen=True)
class PhaseStarted:
    phase: str
    total: int | None = None
    unit: str = "records"


@dataclass(frozen=True)
class Progress:
    """Coalescable: a newer Progress for the same phase replaces an older pending one."""

    phase: str
    done: int
    total: int | None = None
    unit: str = "records"


@dataclass(frozen=True)
class PhaseFinished:
    phase: str
    done: int = 0
    elapsed_s: float = 0.0


@dataclass(frozen=True)
class LogMessage:
    level: Level
    text: str
    code: str | None = None


@dataclass(frozen=True)
class RunFinished:
    report: dict[str, Any] = field(default_factory=dict)


Event = RunStarted | PhaseStarted | Progress | PhaseFinished | LogMessage | RunFinished


class EventSink(Protocol):
    def emit(self, event: Event) -> None: ...


class NullSink:
    def emit(self, event: Event) -> None:
        return None


class ListSink:
    """Keeps every event; for tests and for the run log."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        self.events.append(event)

    def of_type(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


class TeeSink:
    """Sends every event to several sinks (e.g. the screen and the run log)."""

    def __init__(self, *sinks: EventSink) -> None:
        self.sinks = sinks

    def emit(self, event: Event) -> None:
        for sink in self.sinks:
            sink.emit(event)


class CallbackSink:
    def __init__(self, callback: Callable[[Event], None]) -> None:
        self.callback = callback

    def emit(self, event: Event) -> None:
        self.callback(event)


class RunControl:
    """Cooperative cancel and pause, checked by the engine between batches.

    `cancel` is a threading.Event so a signal handler or the UI thread can set it safely.
    """

    def __init__(self) -> None:
        self.cancel = threading.Event()
        self._running = threading.Event()
        self._running.set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def request_cancel(self) -> None:
        self.cancel.set()
        self._running.set()

    def checkpoint(self, resume_hint: str = "") -> None:
        """Block while paused; raise Interrupted if a stop was asked for."""
        while not self._running.wait(0.2):
            if self.cancel.is_set():
                break
        if self.cancel.is_set():
            raise Interrupted(
                "Stopped on request between batches; everything committed so far is kept.",
                hint=resume_hint or None,
            )
