"""The read-ahead child hands over exactly the pages the native reader reads in process, and
its errors arrive with their type, title and hint."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rbmigrate.errors import SourceError
from rbmigrate.source.native import NativeReader
from rbmigrate.source.read_ahead import pages_in_child
from tests.support.stores import item, rb_metadata, write_store

IDS = [f"{n:08d}-0000-4000-8000-000000000000" for n in range(1500)]


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    root = tmp_path_factory.mktemp("read-ahead")
    recs = [
        (mid, f"T{n}\nD\nC", rb_metadata(task=f"task {n % 7}", item=item(mid)), None)
        for n, mid in enumerate(IDS)
    ]
    return write_store(root / "store", recs)


def _child(snapshot, scratch, **kw):
    return pages_in_child(
        snapshot, scratch, "default_tenant", "default_database", "reasoning_memories", **kw
    )


@pytest.mark.parametrize("keys", [None, ("trace_id", "task")])
def test_same_pages_as_in_process(snapshot, tmp_path, keys):
    reader = NativeReader(snapshot, tmp_path / "scratch-a")
    info = reader.collections()[0]
    vectors = keys is None
    here = list(
        reader.pages(info, after=5, with_embeddings=vectors, page_size=400, metadata_keys=keys)
    )
    reader.close()
    there = list(
        _child(
            snapshot,
            tmp_path / "scratch-b",
            after=5,
            page_size=400,
            with_embeddings=vectors,
            metadata_keys=keys,
        )
    )
    assert [len(p) for p in there] == [len(p) for p in here] and len(here) == 4
    for mine, theirs in zip(here, there, strict=True):
        for a, b in zip(mine, theirs, strict=True):
            assert (a.id, a.position, a.document, a.metadata) == (
                b.id,
                b.position,
                b.document,
                b.metadata,
            )
            assert (a.embedding is None) == (b.embedding is None) == (not vectors)
            if vectors:
                assert np.array_equal(a.embedding, b.embedding)


def test_a_damaged_index_is_a_source_error_with_its_title(snapshot, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(snapshot, copy)
    header = next(copy.glob("*/header.bin"))
    header.write_bytes(b"\x00" * 7)
    with pytest.raises(SourceError) as caught:
        list(_child(copy, tmp_path / "scratch", after=0, page_size=500))
    assert caught.value.title == "Corrupted store" and "damaged" in caught.value.message


def test_other_errors_keep_their_type(snapshot, tmp_path):
    """A full disk is sqlite3.OperationalError in the child; the caller must see that type
    (the run turns it into 'free space or move data_dir')."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the scratch directory's parent should be")
    with pytest.raises(NotADirectoryError):
        list(_child(snapshot, blocker / "scratch", after=0, page_size=500))


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == pid:
                out.append(int(entry.name))
    return out


def _gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state == "Z":  # exited, waiting for its (dead) parent's reaper
            return True
        time.sleep(0.1)
    return False


def test_a_killed_reader_leaves_no_child_behind(snapshot, tmp_path):
    """SIGKILL the process that reads: its read-ahead child, blocked on the pipe, must end
    (a killed migration must not leave a process holding the snapshot)."""
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from rbmigrate.source.read_ahead import pages_in_child\n"
        f"pages = pages_in_child(Path({str(snapshot)!r}), Path({str(tmp_path / 's')!r}),"
        " 'default_tenant', 'default_database', 'reasoning_memories', after=0, page_size=50)\n"
        "next(pages)\n"
        "print('reading', flush=True)\n"
        "time.sleep(120)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "reading"
    kids = _children(proc.pid)
    assert len(kids) == 1
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert _gone(kids[0], 15), "the read-ahead child outlived the reader"


def test_stopping_early_ends_the_child(snapshot, tmp_path):
    before = set(_children(os.getpid()))
    pages = _child(snapshot, tmp_path / "scratch", after=0, page_size=50)
    next(pages)
    kids = set(_children(os.getpid())) - before
    pages.close()
    assert kids and all(_gone(k, 5) for k in kids)
