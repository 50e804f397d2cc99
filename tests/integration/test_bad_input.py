"""Bad input gets a clear message and a documented exit code, and loses nothing."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from rbmigrate.target.schema import render_schema
from tests.support.cli import run_cli
from tests.support.pg import PgServer, free_port
from tests.support.stores import item, rb_metadata, tree_state, write_store


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return write_store(tmp_path / "store", [("m1", "T\nD\nC", rb_metadata(item=item("m1")), None)])


def plan(args: list[str], data_dir: Path, **env: str):
    return run_cli(["--headless", "plan", *args], data_dir, **env)


def test_a_path_that_is_not_a_chroma_store(tmp_path, db_url, data_dir):
    (tmp_path / "empty").mkdir()
    res = plan(["--chroma-path", str(tmp_path / "empty"), "--db-url", db_url], data_dir)
    assert res.code == 2
    assert "not a Chroma store" in res.err and "chroma.sqlite3" in res.err
    assert "Traceback" not in res.err


def test_a_path_that_does_not_exist(tmp_path, db_url, data_dir):
    res = plan(["--chroma-path", str(tmp_path / "nope"), "--db-url", db_url], data_dir)
    assert res.code == 2 and "does not exist" in res.err


def test_a_file_that_is_not_sqlite(tmp_path, db_url, data_dir):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "chroma.sqlite3").write_bytes(b"this is not a database" * 100)
    before = tree_state(bad)
    res = plan(["--chroma-path", str(bad), "--db-url", db_url], data_dir)
    assert res.code == 2 and "not an SQLite database" in res.err
    assert tree_state(bad) == before


def test_a_collection_that_does_not_exist(store, db_url, data_dir):
    res = plan(["--chroma-path", str(store), "--db-url", db_url, "--collection", "nope"], data_dir)
    assert res.code == 2
    assert "'nope' does not exist" in res.err and "reasoning_memories" in res.err


def test_an_unreachable_database(store, data_dir):
    url = f"postgresql://postgres:x@127.0.0.1:{free_port()}/postgres"
    res = plan(["--chroma-path", str(store), "--db-url", url], data_dir)
    assert res.code == 3
    assert "cannot connect" in res.err.lower() and ":x@" not in res.err


def test_a_wrong_password(store, pg: PgServer, data_dir):
    url = pg.url("postgres", password="wrong-password-123")
    res = plan(["--chroma-path", str(store), "--db-url", url], data_dir)
    assert res.code == 3
    assert "Authentication failed" in res.err
    assert "wrong-password-123" not in res.err + res.out


def test_a_schema_with_another_dimension(store, db_url, data_dir):
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(render_schema(768).encode())
    res = plan(["--chroma-path", str(store), "--db-url", db_url, "--json"], data_dir)
    assert res.code == 4
    assert "768" in res.err and "384" in res.err
    assert res.json()["status"] == "failed"


def test_config_with_unknown_key_names_key_and_line(store, tmp_path, data_dir):
    cfg = tmp_path / "rbm.toml"
    cfg.write_text('[source]\nchroma_path = "x"\nchroma_paht = "y"\n')
    res = run_cli(["--headless", "plan", "--config", str(cfg)], data_dir)
    assert res.code == 2
    assert "line 3" in res.err and "chroma_paht" in res.err and "chroma_path" in res.err


def test_config_with_a_type_error_names_key_and_line(store, tmp_path, data_dir):
    cfg = tmp_path / "rbm.toml"
    cfg.write_text('[migration]\nbatch_size = "many"\n')
    res = run_cli(["--headless", "plan", "--config", str(cfg)], data_dir)
    assert res.code == 2
    assert "line 2" in res.err and "batch_size" in res.err and "integer" in res.err


def test_usage_errors_exit_2(data_dir):
    assert run_cli(["--headless", "plan", "--batch-size", "lots"], data_dir).code == 2
    res = run_cli(["--headless", "plan"], data_dir, RBMIGRATE_DB_URL="mysql://nope")
    assert res.code == 2 and "db_url" in res.err


def test_no_source_given(tmp_path, db_url, data_dir):
    res = run_cli(["--headless", "plan", "--db-url", db_url], data_dir, cwd=tmp_path)
    assert res.code == 2 and "--chroma-path" in res.err
