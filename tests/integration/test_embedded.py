"""The embedded target: a real PostgreSQL + pgvector from pgserver, reused and stopped cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg

from rbmigrate.target.embedded import EmbeddedPostgres
from tests.support.cli import run_cli
from tests.support.stores import item, rb_metadata, write_store


def test_start_reuse_stop(tmp_path: Path):
    first = EmbeddedPostgres(tmp_path / "pg")
    dsn = first.start()
    try:
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT current_database()").fetchone()[0] == "reasoningbank"
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        second = EmbeddedPostgres(tmp_path / "pg")
        assert second.start() == dsn
        assert not second.started_here  # the first process owns it
        second.stop_if_owner()
        assert first.running()
    finally:
        first.stop_if_owner()
    assert not first.running()


def test_a_server_left_by_a_killed_run_is_adopted(tmp_path: Path):
    code = (
        "import sys, time; from pathlib import Path\n"
        "from rbmigrate.target.embedded import EmbeddedPostgres\n"
        f"s = EmbeddedPostgres(Path({str(tmp_path / 'pg')!r})); s.start(); print('up', flush=True)\n"
        "time.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "up"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    survivor = EmbeddedPostgres(tmp_path / "pg")
    assert survivor.running()  # postgres outlived its killed starter
    survivor.start()
    assert survivor.started_here  # adopted: this process will stop it
    survivor.stop_if_owner()
    assert not survivor.running()


def test_cli_uses_embedded_dir_and_stops_it_afterwards(tmp_path: Path, data_dir: Path):
    store = write_store(tmp_path / "s", [("m1", "T\nD\nC", rb_metadata(item=item("m1")), None)])
    res = run_cli(
        [
            "--headless",
            "bootstrap",
            "--chroma-path",
            str(store),
            "--db-url",
            f"embedded:{tmp_path / 'pg'}",
            "--json",
        ],
        data_dir,
    )
    assert res.code == 0, res.err
    assert res.json()["target"]["kind"] == "embedded"
    server = EmbeddedPostgres(tmp_path / "pg")
    deadline = time.monotonic() + 10
    while server.running() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not server.running()
    # the next run reuses the same cluster and finds the schema it left
    res = run_cli(
        ["--headless", "bootstrap", "--db-url", f"embedded:{tmp_path / 'pg'}", "--json"], data_dir
    )
    assert res.json()["schema"]["before"]["state"] == "ready"


def test_default_target_is_embedded_in_the_data_dir(tmp_path: Path, data_dir: Path):
    res = run_cli(["--headless", "bootstrap", "--json"], data_dir)
    assert res.code == 0, res.err
    assert (data_dir / "pg" / "pgdata" / "PG_VERSION").exists()
