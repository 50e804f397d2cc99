"""The REST transport from the command line: bad input gets a clear message and its exit code,
and a migration killed over REST resumes with no duplicate and no gap."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from rbmigrate.errors import ExitCode
from tests.support.cli import cli_env, run_cli
from tests.support.gateway import ANON_KEY, make_jwt
from tests.support.pg import free_port
from tests.support.stores import item, rb_metadata, write_store
from tests.support.targets import KEY_ENV, rest_target

N = 3000


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    recs = [
        (
            f"m{i}",
            f"T{i}\nD\nC",
            rb_metadata(
                trace_id=f"t{i // 10}",
                task=f"task {i % 40}",
                item=item(f"m{i}"),
                workspace_id=["a" * 16, "b" * 16][i % 2],
            ),
            None,
        )
        for i in range(N)
    ]
    return write_store(tmp_path_factory.mktemp("rest") / "store", recs)


def plan(store: Path, data_dir: Path, url: str, key: str) -> tuple[int, str]:
    res = run_cli(
        ["--headless", "plan", "--chroma-path", str(store), "--supabase-url", url,
         "--supabase-key-env", KEY_ENV],
        data_dir,
        **{KEY_ENV: key},
    )  # fmt: skip
    assert "Traceback" not in res.err, res.err
    return res.code, res.err


def test_unreachable_url(store: Path, data_dir: Path) -> None:
    code, err = plan(store, data_dir, f"http://127.0.0.1:{free_port()}", ANON_KEY)
    assert code == ExitCode.CONNECTION
    assert "127.0.0.1" in err


def test_wrong_key_is_401_and_exit_3(store: Path, db_url: str, data_dir: Path) -> None:
    forged = make_jwt("not-the-project-secret-0123456789abcdef", "service_role")
    with rest_target(db_url) as target:
        assert target.gateway is not None
        code, err = plan(store, data_dir, target.gateway.url, forged)
    assert code == ExitCode.CONNECTION
    assert "key" in err.lower() and forged not in err


def test_key_without_rights_is_exit_4(store: Path, db_url: str, data_dir: Path) -> None:
    with rest_target(db_url) as target:
        assert target.gateway is not None
        code, err = plan(store, data_dir, target.gateway.url, ANON_KEY)
    assert code == ExitCode.SCHEMA
    assert "service" in err.lower() and ANON_KEY not in err


def test_project_without_the_schema_is_exit_4(store: Path, db_url: str, data_dir: Path) -> None:
    with rest_target(db_url, schema=False) as target:
        assert target.gateway is not None
        res = run_cli(
            ["--headless", "migrate", "--chroma-path", str(store), *target.args],
            data_dir,
            **target.env,
        )
    assert res.code == ExitCode.SCHEMA, res.err
    assert "SQL editor" in res.err and "Traceback" not in res.err, res.err[-1500:]


def test_sigkill_over_rest_then_resume(store: Path, db_url: str, data_dir: Path) -> None:
    with rest_target(db_url) as target:
        args = [sys.executable, "-m", "rbmigrate", "--headless", "migrate", "--chroma-path",
                str(store), *target.args, "--batch-size", "200"]  # fmt: skip
        env = cli_env(data_dir, **target.env)
        killed_at = []
        for wanted in (3, 9):  # kill after some batches were committed, twice
            proc = subprocess.Popen(
                args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
            )
            deadline = time.monotonic() + 240
            while proc.poll() is None and time.monotonic() < deadline:
                if committed_batches(db_url) >= wanted:
                    proc.send_signal(signal.SIGKILL)
                    killed_at.append(committed_batches(db_url))
                    break
                time.sleep(0.05)
            proc.wait(timeout=60)
            assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
            with psycopg.connect(db_url) as conn:
                rows = conn.execute("SELECT count(*) FROM memory_items").fetchone()
            assert rows is not None and 0 < rows[0] < N
        final = run_cli([*args[3:], "--resume", "--json"], data_dir, timeout=600, **target.env)
    assert final.code == 0, final.err
    report = final.json()
    assert report["verify"]["ok"], report["verify"]
    with psycopg.connect(db_url) as conn:
        total, distinct = conn.execute(
            "SELECT count(*), count(DISTINCT source_id) FROM memory_items"
        ).fetchone()
        traces = conn.execute(
            "SELECT count(*), count(task_embedding) FROM reasoning_traces"
        ).fetchone()
        runs = conn.execute("SELECT count(*) FROM rbmigrate_runs").fetchone()
    assert (total, distinct) == (N, N)
    assert traces == (N // 10, N // 10)
    assert runs == (1,), "the kills were not resumed into the same run"
    assert killed_at[0] >= 3


def committed_batches(db_url: str) -> int:
    try:
        with psycopg.connect(db_url) as conn:
            row = conn.execute(
                "SELECT coalesce(sum(batches), 0) FROM rbmigrate_checkpoints"
            ).fetchone()
    except psycopg.Error:
        return 0
    return int(row[0]) if row else 0
