"""Engine events become Textual messages: the bridge the engine's worker threads post through.

`post_message` is thread-safe, so the sink is called from the engine's thread and the App
handles the message on its own loop. Progress for one phase coalesces: a newer pending
Progress message replaces the one about to be handled.
"""

from __future__ import annotations

from collections.abc import Callable

from textual.message import Message
from textual.message_pump import MessagePump

from rbmigrate.engine.api import Outcome
from rbmigrate.events import Event, Progress


class JobEvent(Message):
    """One engine event of a job, stamped with the time it was emitted."""

    def __init__(self, job: str, event: Event, at: float) -> None:
        super().__init__()
        self.job = job
        self.event = event
        self.at = at

    def can_replace(self, message: Message) -> bool:
        # Textual asks the message being handled whether the pending `message` supersedes it.
        return (
            isinstance(message, JobEvent)
            and message.job == self.job
            and isinstance(self.event, Progress)
            and isinstance(message.event, Progress)
            and message.event.phase == self.event.phase
        )


class JobDone(Message):
    """A job's engine call returned (its Outcome: report, exit code, error)."""

    def __init__(self, job: str, outcome: Outcome) -> None:
        super().__init__()
        self.job = job
        self.outcome = outcome


class BridgeSink:
    """An EventSink for one job: every event is posted to `target` with the job's clock."""

    def __init__(self, target: MessagePump, job: str, clock: Callable[[], float]) -> None:
        self.target = target
        self.job = job
        self.clock = clock

    def emit(self, event: Event) -> None:
        self.target.post_message(JobEvent(self.job, event, self.clock()))
