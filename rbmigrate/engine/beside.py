"""Work run in a low-priority thread beside a phase that leaves the cores partly idle.

While the trace tasks encode, the model process keeps about 1.75 of two cores busy (its
tokenizing and glue run on one thread). Work that can run then, at a lower priority, takes
those gaps rather than time from the encoder: on Linux the thread's nice value is raised
(the others stay as they are; elsewhere it runs at normal priority), and so is that of the
embedded database's backend that answers its queries.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
NICENESS = 10  # added to the process's own


def lower_priority(pid: int) -> None:
    """Raise another process's nice value too (a local database backend that does the work's
    queries); best effort: needs the same user, or root."""
    if sys.platform == "linux":
        with contextlib.suppress(OSError):
            os.setpriority(
                os.PRIO_PROCESS, pid, min(19, os.getpriority(os.PRIO_PROCESS, pid) + NICENESS)
            )


class Beside(Generic[T]):
    def __init__(self, work: Callable[[], T], name: str) -> None:
        self.result: T | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(work,), name=name, daemon=True)
        self._thread.start()

    def _run(self, work: Callable[[], T]) -> None:
        lower_priority(threading.get_native_id())  # on Linux a thread id is a task id
        try:
            self.result = work()
        except BaseException as exc:
            self.error = exc

    def join(self) -> T | None:
        """The result, or None if the work failed (`error` says why)."""
        self._thread.join()
        return self.result
