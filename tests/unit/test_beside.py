"""Work beside a phase: its result or its error comes back; on Linux it runs niced."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from rbmigrate.engine.beside import NICENESS, Beside, lower_priority


def test_the_result_comes_back_and_only_that_thread_is_niced() -> None:
    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    def work() -> tuple[int, int]:
        return threading.get_native_id(), os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    helper = Beside(work, "test-beside")
    got = helper.join()
    assert got is not None and helper.error is None
    tid, niceness = got
    assert tid != threading.get_native_id()
    if sys.platform == "linux":
        assert niceness == min(19, mine + NICENESS)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == mine


def test_an_error_is_kept_not_raised() -> None:
    def work() -> int:
        raise ValueError("broken")

    helper = Beside(work, "test-beside")
    assert helper.join() is None
    assert isinstance(helper.error, ValueError)
    with pytest.raises(ValueError, match="broken"):
        raise helper.error


@pytest.mark.skipif(sys.platform != "linux", reason="nice values of other processes: Linux")
def test_another_process_can_be_lowered_too() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        before = os.getpriority(os.PRIO_PROCESS, proc.pid)
        lower_priority(proc.pid)
        assert os.getpriority(os.PRIO_PROCESS, proc.pid) == min(19, before + NICENESS)
    finally:
        proc.kill()
        proc.wait()
