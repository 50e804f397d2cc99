"""Faults from outside: the database stops for 10 s, the server cuts a COPY, the run's disk
fills up. Each time the run either finishes or stops with a clear message and resumes to
exactly the source, and the target never holds a half-written batch."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from rbmigrate.errors import ExitCode
from rbmigrate.source.snapshot import store_size
from rbmigrate.target.connection import APP_NAME
from tests.reliability.test_crash_torture import (
    Store,
    Watcher,
    assert_whole_batches,
    build_store,
    committed,
)
from tests.support.cli import Result, cli_env, run_cli
from tests.support.pg import PgServer, start_test_server
from tests.support.stores import tree_state

N = 6000
BATCH = 250


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    return build_store(tmp_path_factory.mktemp("faults") / "store", N)


def args(store: Store, db_url: str, *extra: str) -> list[str]:
    return [
        "--headless",
        "migrate",
        "--chroma-path",
        str(store.path),
        "--db-url",
        db_url,
        "--batch-size",
        str(BATCH),
        *extra,
    ]


def spawn(store: Store, db_url: str, data_dir: Path, report: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "rbmigrate", *args(store, db_url, "--report", str(report))],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(data_dir),
    )


def writing(watcher: Watcher) -> bool:
    return watcher.wait_until(
        lambda ev: any(kind == "start" and phase == "write" for _t, kind, phase in ev), 120
    )


def assert_exact(db_url: str, store: Store) -> list[dict[str, Any]]:
    """Every record once, every trace with its task embedding, inserts adding up."""
    rows, traces = assert_whole_batches(db_url, store.records, BATCH)
    assert (rows, traces) == (store.records, store.traces)
    with psycopg.connect(db_url) as conn:
        no_emb = conn.execute(
            "SELECT count(*) FROM reasoning_traces WHERE task_embedding IS NULL"
        ).fetchone()[0]
        runs = conn.execute(
            "SELECT status, counts FROM rbmigrate_runs WHERE command = 'migrate'"
            " ORDER BY started_at"
        ).fetchall()
    assert no_emb == 0
    assert runs[-1][0] == "ok", runs
    assert sum((c or {}).get("inserted", 0) for _s, c in runs) == store.records, runs
    for _status, c in runs:
        if c:
            assert c["source_records"] == store.records
            assert (
                c["inserted"] + c["updated"] + c["unchanged"] + c["rejected"] + c["skipped"]
                == store.records
            ), c
    return [c for _s, c in runs]


def resume(store: Store, db_url: str, data_dir: Path) -> Result:
    res = run_cli(args(store, db_url, "--json"), data_dir, timeout=300)
    assert res.code == 0, res.err[-3000:]
    return res


# --- a: the database goes away for 10 seconds ---------------------------------------------


@pytest.fixture
def own_pg(tmp_path: Path) -> Iterator[PgServer]:
    """A server of this test's own: stopping it must not disturb the session's server."""
    server = start_test_server(tmp_path / "own-pg")
    try:
        yield server
    finally:
        server.stop()


def test_database_down_for_ten_seconds(
    store: Store, own_pg: PgServer, data_dir: Path, tmp_path: Path
):
    own_pg.create_database("faults")
    db_url = own_pg.url("faults")
    report = tmp_path / "report.json"
    proc = spawn(store, db_url, data_dir, report)
    watcher = Watcher(proc)
    try:
        assert writing(watcher), watcher.text()
        deadline = time.monotonic() + 60
        while committed(db_url)[0] < 2 * BATCH and time.monotonic() < deadline:
            time.sleep(0.02)
        own_pg.server.stop()  # fast shutdown: every session is cut, open batches roll back
        assert proc.poll() is None, "the run ended before the database stopped"
        time.sleep(10)
        own_pg.server.start()
        rc = proc.wait(240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    watcher.join()
    err = watcher.text()
    print(f"\nrun exited {rc} after the database came back")
    assert "Traceback" not in err, err[-3000:]
    if rc == ExitCode.CONNECTION:  # gave up waiting: must say how to resume, then resume
        assert "resume" in err, err[-3000:]
        assert_whole_batches(db_url, store.records, BATCH)
        resume(store, db_url, data_dir)
    else:
        assert rc == 0, err[-3000:]
        messages = json.loads(report.read_text())["messages"]
        assert any(m["code"] == "reconnect" for m in messages), messages
    counts = assert_exact(db_url, store)
    if rc == 0:
        assert counts == [counts[-1]] and counts[-1]["inserted"] == store.records, counts


# --- b: the server terminates the backend in the middle of a COPY ---------------------------


def test_copy_cut_by_the_server(store: Store, db_url: str, data_dir: Path, tmp_path: Path):
    """pg_terminate_backend on rbmigrate's connection while it copies a batch, three times.
    The batch in flight rolls back with its checkpoint; the run reconnects and continues."""
    report = tmp_path / "report.json"
    proc = spawn(store, db_url, data_dir, report)
    watcher = Watcher(proc)
    cuts: list[tuple[str, int]] = []
    checks = 0
    try:
        assert writing(watcher), watcher.text()
        with psycopg.connect(db_url, autocommit=True) as admin:
            last = 0.0
            while proc.poll() is None and len(cuts) < 3:
                if time.monotonic() - last > 1.5:  # let it reconnect and commit between cuts
                    row = admin.execute(
                        "SELECT pid, state FROM pg_stat_activity WHERE application_name = %s"
                        " AND datname = current_database() AND query ILIKE 'COPY%%'"
                        " AND state IN ('active', 'idle in transaction')"
                        " AND pid <> pg_backend_pid() LIMIT 1",
                        (APP_NAME,),
                    ).fetchone()
                    if (
                        row
                        and admin.execute("SELECT pg_terminate_backend(%s)", (row[0],)).fetchone()[
                            0
                        ]
                    ):
                        cuts.append((row[1], committed(db_url, admin)[0]))
                        last = time.monotonic()
                        continue
                # a batch and its checkpoint are committed together, or neither is
                if checks % 4 == 0 or time.monotonic() - last < 0.1:
                    assert_whole_batches(db_url, store.records, BATCH, admin)
                checks += 1
                time.sleep(0.002)
        rc = proc.wait(240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    watcher.join()
    err = watcher.text()
    print(f"\ncuts (backend state, rows committed): {cuts}; {checks} atomicity checks")
    assert cuts, "never caught a COPY in flight"
    assert "Traceback" not in err, err[-3000:]
    if rc == 0:
        messages = json.loads(report.read_text())["messages"]
        assert sum(m["code"] == "reconnect" for m in messages) == len(cuts), messages
    else:  # stopped resumable: the same command finishes the job
        assert rc == ExitCode.CONNECTION and "resume" in err, err[-3000:]
        resume(store, db_url, data_dir)
    assert_exact(db_url, store)


# --- c: the data directory's disk is full ----------------------------------------------------


class Tmpfs:
    def __init__(self, path: Path, size: str) -> None:
        self.path = path
        path.mkdir()
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True
        )

    def grow(self, size: str) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(self.path)], check=True)

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], check=False)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Any]:
    made: list[Tmpfs] = []

    def make(size: str) -> Tmpfs:
        fs = Tmpfs(tmp_path / f"tmpfs{len(made)}", size)
        made.append(fs)
        return fs

    try:
        yield make
    finally:
        for fs in made:
            fs.unmount()


def assert_disk_full_message(res: Result) -> None:
    text = res.err + res.out
    assert res.code == ExitCode.USAGE, (res.code, text[-3000:])
    assert "Traceback" not in text and "this is a bug" not in text, text[-3000:]
    low = text.lower()
    assert "disk" in low and ("space" in low or "full" in low), text[-3000:]
    assert "data_dir" in text, text[-3000:]  # says what to do: free space or move data_dir


def test_disk_full_before_the_snapshot(store: Store, db_url: str, tmpfs: Any):
    """300 KB for the data directory: the snapshot cannot fit. Nothing is written anywhere;
    with room made, the same command runs to the end."""
    before = tree_state(store.path)
    fs = tmpfs("300k")
    res = run_cli(args(store, db_url), fs.path, timeout=120)
    assert_disk_full_message(res)
    with psycopg.connect(db_url) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ).fetchone()[0]
    assert tables == 0, "the target was written to"
    assert tree_state(store.path) == before, "the source directory changed"
    fs.grow(f"{store_size(store.path) * 3 // 1024}k")
    resume(store, db_url, fs.path)
    assert_exact(db_url, store)
    assert tree_state(store.path) == before


def test_disk_full_in_the_middle_of_the_run(store: Store, db_url: str, tmpfs: Any):
    """Room for the snapshot and little more: the disk fills while batches are written. The
    run stops with a clear message at a committed batch; after the space is freed the same
    command resumes it to the end."""
    before = tree_state(store.path)
    size = store_size(store.path)
    fs = tmpfs(f"{int(size * 1.1) // 1024 + 100}k")
    res = run_cli(args(store, db_url), fs.path, timeout=120)
    assert_disk_full_message(res)
    rows, _traces = assert_whole_batches(db_url, store.records, BATCH)
    assert rows < store.records, "the disk never filled: the test proves nothing"
    assert tree_state(store.path) == before, "the source directory changed"
    fs.grow(f"{size * 3 // 1024}k")
    res = resume(store, db_url, fs.path)
    assert any(m["code"] == "resume" for m in res.json()["messages"]), res.json()["messages"]
    assert_exact(db_url, store)
    assert tree_state(store.path) == before
