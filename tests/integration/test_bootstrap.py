"""schema.sql on a real PostgreSQL + pgvector: idempotent, dimension-aware, Supabase-like."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import psycopg
import pytest

from rbmigrate.target.schema import apply_schema, inspect_schema, manifest, render_schema
from tests.support.cli import run_cli
from tests.support.stores import item, rb_metadata, write_store

REPO = Path(__file__).resolve().parents[2]


def test_bootstrap_creates_everything_and_is_idempotent(db_url, data_dir):
    res = run_cli(["--headless", "bootstrap", "--db-url", db_url, "--json"], data_dir)
    assert res.code == 0, res.err
    report = res.json()
    assert report["schema"]["before"]["state"] == "missing"
    assert report["schema"]["after"]["state"] == "ready"
    assert report["schema"]["applied"]
    assert report["target"]["pgvector_version"] == "0.6.2"
    again = run_cli(["--headless", "bootstrap", "--db-url", db_url, "--json"], data_dir).json()
    assert again["schema"]["before"]["state"] == "ready" and not again["schema"]["applied"]
    # and the raw file itself can run twice (the SQL editor way)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(render_schema().encode())
        conn.execute(render_schema().encode())
        assert inspect_schema(conn, "public", 384).state() == "ready"


def test_check_reports_without_creating(db_url, data_dir):
    res = run_cli(["--headless", "bootstrap", "--check", "--db-url", db_url, "--json"], data_dir)
    report = res.json()
    assert res.code == 0 and not report["schema"]["applied"]
    missing = report["schema"]["before"]["missing"]
    m = manifest()
    assert len(missing) >= len(m.tables) + len(m.indexes) + len(m.functions)
    assert "function search_similar_memories" in missing
    with psycopg.connect(db_url) as conn:
        assert (
            conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname='public'").fetchone()[0]
            == 0
        )


def test_dimension_follows_the_source(tmp_path, db_url, data_dir):
    store = write_store(
        tmp_path / "s", [("m1", "T\nD\nC", rb_metadata(item=item("m1")), None)], dim=16
    )
    res = run_cli(
        ["--headless", "bootstrap", "--chroma-path", str(store), "--db-url", db_url, "--json"],
        data_dir,
    )
    assert res.code == 0, res.err
    with psycopg.connect(db_url) as conn:
        typmod = conn.execute(
            "SELECT atttypmod FROM pg_attribute WHERE attrelid = 'memory_items'::regclass "
            "AND attname = 'content_embedding'"
        ).fetchone()[0]
    assert typmod == 16


def test_plain_postgres_gets_supabase_roles_and_jwt_shim(db_url):
    with psycopg.connect(db_url, autocommit=True) as conn:
        apply_schema(conn, "public", 384)
        roles = {
            r[0]
            for r in conn.execute(
                "SELECT rolname FROM pg_roles WHERE rolname IN ('anon','authenticated','service_role')"
            )
        }
        assert roles == {"anon", "authenticated", "service_role"}
        conn.execute(
            """SELECT set_config('request.jwt.claims', '{"app_metadata": {"workspace_id": "w1"}}', false)"""
        )
        assert (
            conn.execute("SELECT auth.jwt() -> 'app_metadata' ->> 'workspace_id'").fetchone()[0]
            == "w1"
        )
        rls = dict(
            conn.execute(
                "SELECT relname, relrowsecurity FROM pg_class WHERE relname IN "
                "('memory_items','reasoning_traces','rbmigrate_runs')"
            ).fetchall()
        )
        assert all(rls.values())


def test_upstream_schema_is_upgraded_and_its_leaky_policy_removed(db_url):
    upstream = (REPO / "tests" / "support" / "upstream_schema.sql").read_text()
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            render_schema().split("CREATE SCHEMA IF NOT EXISTS extensions;")[0].encode()
        )  # roles
        conn.execute(upstream.encode())
        before = inspect_schema(conn, "public", 384)
        assert before.state() == "partial" and "column memory_items.source_id" in before.missing
        after = apply_schema(conn, "public", 384)
        assert after.state() == "ready"
        leaky = conn.execute(
            "SELECT count(*) FROM pg_policies WHERE policyname LIKE 'Allow all%'"
        ).fetchone()[0]
        assert leaky == 0


def test_incompatible_schema_is_refused_with_exit_4(db_url, data_dir):
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(render_schema(768).encode())
    res = run_cli(
        ["--headless", "bootstrap", "--db-url", db_url], data_dir, RBMIGRATE_DIMENSION="384"
    )
    assert res.code == 4
    assert "vector(768)" in res.err and "vector(384)" in res.err


def test_other_schema_name(db_url):
    with psycopg.connect(db_url, autocommit=True) as conn:
        status = apply_schema(conn, "rb_alt", 384)
        assert status.state() == "ready"
        assert conn.execute("SELECT to_regclass('rb_alt.memory_items') IS NOT NULL").fetchone()[0]
        assert conn.execute("SELECT to_regclass('public.memory_items') IS NULL").fetchone()[0]


def test_print_sql(data_dir):
    res = run_cli(["--headless", "bootstrap", "--print-sql"], data_dir)
    assert res.code == 0 and "CREATE TABLE IF NOT EXISTS public.memory_items" in res.out


@pytest.mark.slow
def test_non_editable_install_finds_its_schema(tmp_path):
    """A wheel (not the source tree) carries schema.sql and config.example.toml."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        check=True,
    )
    wheel = next(tmp_path.glob("rbmigrate-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "rbmigrate/_data/schema.sql" in names and "rbmigrate/_data/config.example.toml" in names
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
    )
    code = (
        "import rbmigrate.target.schema as s, pathlib; "
        "assert 'site' in s.__file__, s.__file__; print(len(s.schema_template()))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) == len((REPO / "schema.sql").read_text())
