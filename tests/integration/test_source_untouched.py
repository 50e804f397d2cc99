"""The first promise: the source directory is byte-identical after any rbmigrate command."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from rbmigrate.config import load
from rbmigrate.engine import api
from rbmigrate.errors import ExitCode
from rbmigrate.events import CallbackSink, Progress, RunControl
from rbmigrate.target.schema import render_schema
from tests.support.cases import write_cases_store
from tests.support.cli import cli_env, run_cli
from tests.support.stores import item, rb_metadata, tree_state, write_store

N = 20000


@pytest.fixture(scope="module")
def big_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20,000 small records (8-d vectors keep it quick to write)."""
    path = tmp_path_factory.mktemp("big") / "store"
    rows = [
        (f"m{i}", f"T{i}\nD\nC", rb_metadata(trace_id=f"t{i // 2}", item=item(f"m{i}")), None)
        for i in range(N)
    ]
    return write_store(path, rows, dim=8)


def test_untouched_after_a_failing_run(tmp_path, db_url, data_dir):
    store = write_cases_store(tmp_path / "cases")
    before = tree_state(store)
    res = run_cli(["--headless", "plan", "--chroma-path", str(store), "--db-url", db_url], data_dir)
    assert res.code == 1  # rejects above max_rejects = 0
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(render_schema(768).encode())
    res = run_cli(["--headless", "--chroma-path", str(store), "--db-url", db_url], data_dir)
    assert res.code == 4  # schema of another dimension
    assert tree_state(store) == before


def test_untouched_after_an_interrupted_run_in_process(big_store, db_url, data_dir):
    before = tree_state(big_store)
    control = RunControl()

    def stop_midway(event: object) -> None:
        if isinstance(event, Progress) and event.phase == "plan" and event.done >= 2000:
            control.request_cancel()

    cfg = load(
        environ={},
        overrides={
            "source": {"chroma_path": str(big_store)},
            "target": {"db_url": db_url},
            "migration": {"batch_size": 500},
            "run": {"data_dir": str(data_dir)},
        },
    )
    outcome = api.plan(cfg, control=control, sink=CallbackSink(stop_midway))
    assert outcome.exit_code == ExitCode.INTERRUPTED
    assert outcome.report["status"] == "interrupted"
    assert tree_state(big_store) == before


def test_untouched_after_ctrl_c_on_the_command_line(big_store, db_url, data_dir):
    before = tree_state(big_store)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rbmigrate",
            "--headless",
            "plan",
            "--chroma-path",
            str(big_store),
            "--db-url",
            db_url,
            "--batch-size",
            "100",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(data_dir),
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 120
    for line in proc.stderr:
        if line.startswith("-> plan") or time.monotonic() > deadline:
            break
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Interrupted" in err or "Stopped" in err
    assert tree_state(big_store) == before
