"""A live source: another process keeps writing to the Chroma directory during the run.

rbmigrate reads a snapshot, so the run must reconcile exactly with the snapshot's count
(not with whatever the directory holds by the end), and rbmigrate itself must never open a
file of the live directory for writing, create, rename or delete one there. The kernel is
the witness: the run is traced with strace, every file syscall that could modify the live
directory is checked.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import chromadb
import psycopg
import pytest
from chromadb.config import Settings

from tests.support.cli import cli_env
from tests.support.stores import item, rb_metadata, write_store

INITIAL = 3000

WRITER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    import chromadb, numpy as np
    from chromadb.config import Settings
    store, progress, stop = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    client = chromadb.PersistentClient(path=store, settings=Settings(anonymized_telemetry=False))
    col = client.get_collection("reasoning_memories")
    rng = np.random.default_rng(7)
    n = 0
    while not stop.exists():
        ids = [f"live-{n + i}" for i in range(50)]
        metas = [
            {
                "trace_id": f"live-trace-{(n + i) // 10}",
                "task": "written while rbmigrate runs",
                "outcome": "success",
                "timestamp": "2025-05-01T10:00:00",
                "workspace_id": "0123456789abcdef",
                "memory_data": json.dumps({"id": f"live-{n + i}", "title": "Live",
                    "description": "d", "content": "c", "domain_category": "live"}),
            }
            for i in range(50)
        ]
        vecs = rng.standard_normal((50, 384)).astype("float32")
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        col.add(ids=ids, documents=["Live\\nd\\nc"] * 50, metadatas=metas, embeddings=vecs)
        n += 50
        progress.write_text(str(n))
        time.sleep(0.05)
    """
)

MODIFYING_OPEN = re.compile(r"O_WRONLY|O_RDWR|O_CREAT|O_TRUNC")
PATH_CALL = re.compile(r'^\d+\s+(\w+)\((?:AT_FDCWD|\d+), "([^"]+)"(.*)$')
MODIFYING_CALLS = {
    "unlink",
    "unlinkat",
    "rename",
    "renameat",
    "renameat2",
    "truncate",
    "mkdir",
    "mkdirat",
    "rmdir",
    "chmod",
    "fchmodat",
    "utimensat",
    "link",
    "linkat",
    "symlink",
    "symlinkat",
}


def written_count(progress: Path) -> int:
    try:
        return int(progress.read_text() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def live_count(store: Path) -> int:
    client = chromadb.PersistentClient(
        path=str(store), settings=Settings(anonymized_telemetry=False)
    )
    try:
        return client.get_collection("reasoning_memories").count()
    finally:
        client.clear_system_cache()


def modifications_of(trace: Path, live: Path) -> list[str]:
    """strace lines where the traced processes changed, or could change, a live file."""
    live_prefix = str(live.resolve())
    bad = []
    for line in trace.read_text(errors="replace").splitlines():
        m = PATH_CALL.match(line)
        if not m:
            continue
        call, path, rest = m.groups()
        if not str(Path(path).resolve()).startswith(live_prefix):
            continue
        if (
            call in ("open", "openat", "creat") and (call == "creat" or MODIFYING_OPEN.search(rest))
        ) or call in MODIFYING_CALLS:
            bad.append(line)
    return bad


@pytest.mark.slow
def test_migrating_a_store_that_is_being_written(
    tmp_path: Path, db_url: str, data_dir: Path
) -> None:
    if shutil.which("strace") is None:
        pytest.fail("strace is required (CI installs it: apt-get install strace)")
    live = write_store(
        tmp_path / "live",
        [
            (f"m{i}", f"T{i}\nD\nC", rb_metadata(trace_id=f"t{i // 10}", item=item(f"m{i}")), None)
            for i in range(INITIAL)
        ],
    )
    progress, stop = tmp_path / "written", tmp_path / "stop"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(live), str(progress), str(stop)],
        stderr=subprocess.PIPE,
        text=True,
    )
    trace = tmp_path / "strace.txt"
    try:
        deadline = time.monotonic() + 120
        while written_count(progress) < 200:  # the writer is really going
            assert writer.poll() is None, writer.stderr.read() if writer.stderr else ""
            assert time.monotonic() < deadline, "the writer did not start"
            time.sleep(0.1)
        run = subprocess.run(
            [
                "strace",
                "-f",
                "-qq",
                "-o",
                str(trace),
                "-e",
                "trace=%file",
                sys.executable,
                "-m",
                "rbmigrate",
                "--headless",
                "migrate",
                "--chroma-path",
                str(live),
                "--db-url",
                db_url,
                "--json",
            ],
            capture_output=True,
            text=True,
            env=cli_env(data_dir),
            timeout=600,
        )
        during = written_count(progress)
        time.sleep(0.5)
    finally:
        stop.touch()
        writer.wait(timeout=60)
    assert writer.returncode == 0, writer.stderr.read() if writer.stderr else ""
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    snapshot = report["counts"]["source_records"]
    written = written_count(progress)
    # the snapshot is one consistent moment: all of the initial store, part of the writes
    assert INITIAL + 200 <= snapshot <= INITIAL + during, (snapshot, during)
    assert (snapshot - INITIAL) % 50 == 0, "a half-committed writer batch was read"
    assert written > snapshot - INITIAL, "the writer did not keep writing during the run"
    assert report["verify"]["ok"], report["verify"]
    with psycopg.connect(db_url) as conn:
        total, distinct = conn.execute(
            "SELECT count(*), count(DISTINCT source_id) FROM memory_items"
        ).fetchone()
    assert total == distinct == snapshot
    # the live store lost nothing and rbmigrate never wrote to it
    assert live_count(live) == INITIAL + written
    assert trace.stat().st_size > 0
    bad = modifications_of(trace, live)
    assert not bad, "\n".join(bad[:20])


def test_the_strace_check_sees_a_write(tmp_path: Path) -> None:
    """The witness works: a process that does write into the directory is caught."""
    live = tmp_path / "live"
    live.mkdir()
    (live / "f").write_text("x")
    trace = tmp_path / "t.txt"
    subprocess.run(
        [
            "strace",
            "-f",
            "-qq",
            "-o",
            str(trace),
            "-e",
            "trace=%file",
            sys.executable,
            "-c",
            f"open({str(live / 'f')!r}, 'a').write('y'); open({str(live / 'f')!r}).read()",
        ],
        check=True,
    )
    bad = modifications_of(trace, live)
    assert len(bad) == 1 and "O_WRONLY" in bad[0], bad


def test_a_snapshot_behind_its_write_log_is_read_with_chromadb(
    tmp_path: Path, db_url: str, data_dir: Path
) -> None:
    """Found by the live-source test: a snapshot taken between a write-log insert and its
    application to the metadata segment. The native reader must not fail the run (it did,
    as an internal error); chromadb, which replays the log, reads it instead."""
    import sqlite3

    store = write_store(
        tmp_path / "s",
        [
            (f"m{i}", f"T{i}\nD\nC", rb_metadata(trace_id=f"t{i // 5}", item=item(f"m{i}")), None)
            for i in range(50)
        ],
    )
    db = sqlite3.connect(store / "chroma.sqlite3")
    changed = db.execute(
        "UPDATE max_seq_id SET seq_id = seq_id - 1 WHERE segment_id IN"
        " (SELECT id FROM segments WHERE scope = 'METADATA')"
    ).rowcount
    db.commit()
    db.close()
    assert changed == 1
    res = subprocess.run(
        [sys.executable, "-m", "rbmigrate", "--headless", "migrate", "--chroma-path", str(store),
         "--db-url", db_url, "--json"],
        capture_output=True, text=True, env=cli_env(data_dir), timeout=600,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    report = json.loads(res.stdout)
    assert report["source"]["reader"] == "chromadb"
    assert "reader_fallback" in res.stderr or "native reader unavailable" in res.stderr
    assert report["counts"]["source_records"] == report["counts"]["inserted"] == 50
    assert report["verify"]["ok"]
