"""SQL identifiers and filter values from config never reach SQL as text.

The schema name is the one identifier a user configures; it is validated where it is read
(flag, environment, file) and quoted where it is used. Collection and workspace names are
values, always sent as parameters. Each payload below is tried through every door, and the
database catalog must be exactly as it was afterwards.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from rbmigrate.errors import ExitCode, SchemaError
from rbmigrate.target.schema import quote_ident, render_schema
from tests.support.cli import run_cli
from tests.support.stores import item, rb_metadata, write_store

PAYLOADS = [
    "public; DROP TABLE memory_items; --",
    'x"; DROP SCHEMA public CASCADE; --',
    "rb'); SELECT pg_sleep(30); --",
    "pg_catalog.pg_class",
    "Public",
    "a b",
    "1abc",
    "a" * 64,
    "$(touch /tmp/rbm-pwned)",
    "`id`",
]


def catalog(db_url: str) -> list[tuple[str, str]]:
    """Every schema and relation in the database: what an injection would change."""
    with psycopg.connect(db_url) as conn:
        return [
            (str(a), str(b))
            for a, b in conn.execute(
                "SELECT n.nspname, coalesce(c.relname, '') FROM pg_namespace n"
                " LEFT JOIN pg_class c ON c.relnamespace = n.oid ORDER BY 1, 2"
            ).fetchall()
        ]


@pytest.fixture
def store(tmp_path: Path) -> Path:
    recs = [
        (
            f"m{i}",
            f"T{i}\nD\nC",
            rb_metadata(trace_id=f"t{i // 3}", item=item(f"m{i}"), workspace_id="ws" + "0" * 14),
            None,
        )
        for i in range(9)
    ]
    return write_store(tmp_path / "store", recs)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_schema_name_is_validated_before_any_sql(payload: str) -> None:
    with pytest.raises(SchemaError, match="not an allowed SQL identifier"):
        quote_ident(payload)
    with pytest.raises(SchemaError):
        render_schema(384, payload)


@pytest.mark.parametrize("door", ["flag", "env", "file"])
def test_schema_injection_through_every_door_is_refused(
    door: str, store: Path, db_url: str, data_dir: Path, tmp_path: Path
) -> None:
    before = catalog(db_url)
    pwned = Path("/tmp/rbm-pwned")
    pwned.unlink(missing_ok=True)
    for payload in PAYLOADS:
        base = ["--headless", "migrate", "--chroma-path", str(store), "--db-url", db_url]
        env: dict[str, str] = {}
        if door == "flag":
            args = [*base, "--schema", payload]
        elif door == "env":
            args, env = base, {"RBMIGRATE_SCHEMA": payload}
        else:
            cfg = tmp_path / "rbmigrate.toml"
            escaped = payload.replace("\\", "\\\\").replace('"', '\\"')
            cfg.write_text(f'[target]\nschema = "{escaped}"\n', encoding="utf-8")
            args = ["--config", str(cfg), *base]
        res = run_cli(args, data_dir, **env)
        assert res.code == ExitCode.USAGE, (payload, res.err)
        assert "schema" in res.err and "identifier" in res.err, res.err
        assert "Traceback" not in res.err
    assert catalog(db_url) == before, "the database changed"
    assert not pwned.exists()


def test_collection_and_workspace_values_are_parameters(
    store: Path, db_url: str, data_dir: Path
) -> None:
    """Hostile collection/workspace names select nothing and change nothing."""
    ok = run_cli(
        ["--headless", "migrate", "--chroma-path", str(store), "--db-url", db_url, "--json"],
        data_dir,
    )
    assert ok.code == 0, ok.err
    before = catalog(db_url)
    with psycopg.connect(db_url) as conn:
        rows_before = conn.execute("SELECT count(*) FROM memory_items").fetchone()
    hostile = "x'); DELETE FROM memory_items; --"
    res = run_cli(
        [
            "--headless",
            "migrate",
            "--chroma-path",
            str(store),
            "--db-url",
            db_url,
            "--collection",
            hostile,
        ],
        data_dir,
    )
    assert res.code == ExitCode.USAGE and hostile in res.err, res.err
    for cmd in (["plan"], ["compare", "anything", "--k", "3"]):
        res = run_cli(
            [
                "--headless",
                *cmd,
                "--chroma-path",
                str(store),
                "--db-url",
                db_url,
                "--workspace",
                hostile,
                "--json",
            ],
            data_dir,
        )
        assert "Traceback" not in res.err, res.err
    assert catalog(db_url) == before
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM memory_items").fetchone() == rows_before
