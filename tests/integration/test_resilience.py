"""Exactly-once under kills, Ctrl+C and a database restart, on a multi-batch run."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from tests.support.cli import cli_env, run_cli
from tests.support.pg import PgServer
from tests.support.stores import item, rb_metadata, write_store

N = 12000
TASKS = [f"Resilience task number {i}: keep the pipeline exactly-once" for i in range(30)]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12,000 real-sized (384-d) records in 600 traces of 20, with 30 distinct tasks."""
    path = tmp_path_factory.mktemp("resilience") / "store"
    recs = []
    for i in range(N):
        trace = f"trace-{i // 20}"
        meta = rb_metadata(
            trace_id=trace,
            task=TASKS[(i // 20) % len(TASKS)],
            timestamp=f"2025-04-{1 + i % 28:02d}T10:00:00",
            item=item(f"mem-{i}", title=f"M{i}"),
            workspace_id=["a" * 16, "b" * 16, None][i % 3],
        )
        recs.append((f"mem-{i}", f"M{i}\nDesc\nContent", meta, None))
    return write_store(path, recs)


def start(store: Path, db_url: str, data_dir: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rbmigrate",
            "--headless",
            "migrate",
            "--chroma-path",
            str(store),
            "--db-url",
            db_url,
            "--batch-size",
            "400",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(data_dir),
    )


def wait_for(proc: subprocess.Popen[str], marker: str, timeout: float = 180) -> None:
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    for line in proc.stderr:
        if marker in line or time.monotonic() > deadline:
            return


def check_target(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        total, distinct = conn.execute(
            "SELECT count(*), count(DISTINCT source_id) FROM memory_items"
        ).fetchone()
        assert (total, distinct) == (N, N), "duplicates or gaps"
        traces = conn.execute(
            "SELECT count(*) FROM reasoning_traces WHERE task_embedding IS NOT NULL"
        ).fetchone()[0]
        assert traces == N // 20
        runs = conn.execute(
            "SELECT status, counts FROM rbmigrate_runs WHERE command = 'migrate'"
        ).fetchall()
    inserted = sum(c.get("inserted", 0) for _s, c in runs)
    assert inserted == N, runs
    for _status, c in runs:
        if c:
            assert (
                c["source_records"]
                == c["inserted"] + c["updated"] + c["unchanged"] + c["rejected"] + c["skipped"]
            )


def _progress(db_url: str) -> tuple[int, str | None]:
    """Committed batches of the latest run, and the phase its row records."""
    try:
        with psycopg.connect(db_url, connect_timeout=2) as conn:
            row = conn.execute(
                "SELECT coalesce((SELECT sum(batches) FROM rbmigrate_checkpoints c WHERE c.run_id = r.run_id), 0),"
                " r.phase FROM rbmigrate_runs r ORDER BY started_at DESC LIMIT 1"
            ).fetchone()
    except psycopg.Error:
        return 0, None
    return (int(row[0]), row[1]) if row else (0, None)


def test_sigkill_at_random_points_then_resume(store: Path, db_url: str, data_dir: Path):
    """Kill points chosen by progress, not by time: before anything is committed, after
    random numbers of batches, while embedding tasks, building indexes and verifying."""
    rng = random.Random(20261124)
    points: list[tuple[str, object]] = [("seconds", 1.5)]
    points += [("batches", n) for n in sorted(rng.sample(range(2, 28), 3))]
    points += [("phase", "embed"), ("phase", "index"), ("phase", "verify")]
    kills = []
    for kind, value in points:
        proc = start(store, db_url, data_dir)
        began = time.monotonic()
        while proc.poll() is None and time.monotonic() - began < 240:
            batches, phase = _progress(db_url)
            if (
                (kind == "seconds" and time.monotonic() - began >= value)
                or (kind == "batches" and batches >= value)
                or (kind == "phase" and phase == value)
            ):
                proc.send_signal(signal.SIGKILL)
                kills.append((kind, value, batches, phase))
                break
            time.sleep(0.05)
        proc.communicate(timeout=60)
    assert len(kills) >= 5, kills
    final = run_cli(
        [
            "--headless",
            "migrate",
            "--chroma-path",
            str(store),
            "--db-url",
            db_url,
            "--batch-size",
            "400",
            "--resume",
            "--deep",
            "--json",
        ],
        data_dir,
        timeout=600,
    )
    assert final.code == 0, final.err
    report = final.json()
    assert report["verify"]["ok"] and report["verify"]["vectors_compared"] == N
    check_target(db_url)


def test_ctrl_c_stops_between_batches_and_resume_continues(
    store: Path, db_url: str, data_dir: Path
):
    proc = start(store, db_url, data_dir)
    wait_for(proc, "-> write")
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "migrate --resume" in err  # says how to resume
    with psycopg.connect(db_url) as conn:
        (status,) = conn.execute("SELECT status FROM rbmigrate_runs").fetchone()
        partial = conn.execute("SELECT count(*) FROM memory_items").fetchone()[0]
    assert status == "interrupted" and 0 < partial < N
    res = run_cli(
        [
            "--headless",
            "migrate",
            "--chroma-path",
            str(store),
            "--db-url",
            db_url,
            "--batch-size",
            "400",
            "--json",
        ],
        data_dir,
        timeout=600,
    )
    assert res.code == 0, res.err
    report = res.json()
    assert any(m["code"] == "resume" and "resuming" in m["text"] for m in report["messages"])
    assert report["counts"]["inserted"] == N and report["counts"]["source_records"] == N
    check_target(db_url)


def test_database_restart_in_the_middle_of_a_run(
    store: Path, db_url: str, data_dir: Path, pg: PgServer, tmp_path: Path
):
    report_file = tmp_path / "report.json"
    proc = start(store, db_url, data_dir, "--report", str(report_file))
    wait_for(proc, "-> write")
    time.sleep(1.0)
    pg.restart()
    _out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    report = json.loads(report_file.read_text())
    assert any(m["code"] == "reconnect" for m in report["messages"]), report["messages"]
    assert report["verify"]["ok"]
    check_target(db_url)
