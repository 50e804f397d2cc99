"""doctor on real parts: each check passes on a good setup and fails, with advice, on a broken one."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from rbmigrate.demo import write_demo
from rbmigrate.engine.doctor import connection_kind
from rbmigrate.errors import ExitCode
from rbmigrate.target.connection import connect
from rbmigrate.target.schema import apply_schema
from tests.support.cli import run_cli
from tests.support.pg import PgServer

EXPECTED = {
    "source",
    "snapshot space",
    "source in use",
    "target reachable",
    "credentials",
    "connection kind",
    "versions",
    "vector extension",
    "permissions",
    "schema",
    "statement timeout",
    "embedding model",
    "estimate",
}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("doctor") / "store"
    write_demo(path, 30, embeddings="random")
    return path


def doctor(store: Path | str, db_url: str, data_dir: Path, **env: str) -> tuple[int, dict, str]:
    res = run_cli(
        ["--headless", "doctor", "--chroma-path", str(store), "--db-url", db_url, "--json"],
        data_dir,
        **env,
    )
    assert "Traceback" not in res.err
    return res.code, res.json(), res.err


def by_name(result: dict) -> dict[str, dict]:
    return {c["name"]: c for c in result["checks"]}


def test_good_setup_passes(store: Path, db_url: str, data_dir: Path):
    code, result, _ = doctor(store, db_url, data_dir)
    assert code == 0, result
    checks = by_name(result)
    assert set(checks) == EXPECTED
    assert result["ok"] and result["failed"] == []
    assert {c["status"] for c in checks.values()} <= {"ok", "warn"}
    assert "reasoning_memories (384-d)" in checks["source"]["detail"]
    # pgserver ships pgvector 0.6.2: filtered search has no iterative scan, and doctor says so
    assert checks["versions"]["status"] == "warn" and "0.6.2" in checks["versions"]["detail"]
    assert "objects to create" in checks["schema"]["detail"]
    assert checks["embedding model"]["detail"].endswith("384-d")
    assert checks["estimate"]["detail"].startswith("30 records: about")
    assert result["estimate"]["rows"]["memory_items"] == 30


def test_unreadable_source(tmp_path: Path, db_url: str, data_dir: Path):
    code, result, _ = doctor(tmp_path / "missing", db_url, data_dir)
    assert code == ExitCode.USAGE
    checks = by_name(result)
    assert checks["source"]["status"] == "fail" and "does not exist" in checks["source"]["detail"]
    assert checks["source"]["advice"]
    assert checks["target reachable"]["status"] == "ok"  # the other checks still ran


def test_wrong_password(store: Path, pg: PgServer, db_url: str, data_dir: Path):
    bad = db_url.replace(pg.password, "not-the-password")
    code, result, err = doctor(store, bad, data_dir)
    assert code == ExitCode.CONNECTION
    checks = by_name(result)
    assert checks["target reachable"]["status"] == "ok"
    assert checks["credentials"]["status"] == "fail"
    assert "not-the-password" not in str(result) + err


def test_unreachable_target(store: Path, data_dir: Path):
    code, result, _ = doctor(store, "postgresql://u:p@127.0.0.1:9/db", data_dir)
    assert code == ExitCode.CONNECTION
    assert by_name(result)["target reachable"]["status"] == "fail"


def test_role_without_create_rights(store: Path, pg: PgServer, db_url: str, data_dir: Path):
    with pg.admin() as admin:
        admin.execute("DROP ROLE IF EXISTS doctor_weak")
        admin.execute("CREATE ROLE doctor_weak LOGIN PASSWORD 'weak-pw'")
    try:
        url = db_url.replace(f"postgres:{pg.password}@", "doctor_weak:weak-pw@")
        code, result, _ = doctor(store, url, data_dir)
        assert code == ExitCode.SCHEMA
        checks = by_name(result)
        assert checks["permissions"]["status"] == "fail"
        assert "GRANT CREATE ON SCHEMA" in checks["permissions"]["advice"]
        assert checks["vector extension"]["status"] == "fail"
    finally:
        with pg.admin() as admin:
            admin.execute("DROP OWNED BY doctor_weak")
            admin.execute("DROP ROLE doctor_weak")


def test_mismatched_schema(store: Path, db_url: str, data_dir: Path):
    with connect(db_url, autocommit=True) as conn:
        apply_schema(conn, "public", 8)
    code, result, _ = doctor(store, db_url, data_dir)
    assert code == ExitCode.SCHEMA
    schema = by_name(result)["schema"]
    assert schema["status"] == "fail"
    assert "vector(8)" in schema["detail"] and schema["advice"]


def test_model_missing(store: Path, db_url: str, data_dir: Path):
    code, result, _ = doctor(store, db_url, data_dir, RBMIGRATE_MODEL="acme/not-a-model")
    assert code == ExitCode.USAGE
    model = by_name(result)["embedding model"]
    assert model["status"] == "fail" and "not-a-model" in model["detail"]


def test_connection_kind_from_url():
    pooler = "postgresql://postgres.abc:pw@aws-0-eu-central-1.pooler.supabase.com"
    assert connection_kind(f"{pooler}:6543/postgres", "postgres")[1] == "fail"
    assert connection_kind(f"{pooler}:5432/postgres", "postgres")[1] == "ok"
    assert connection_kind("postgresql://u:p@db.abc.supabase.co:5432/postgres", "postgres") == (
        "direct PostgreSQL",
        "ok",
        "",
    )
    assert connection_kind("embedded", "embedded")[1] == "ok"


def test_full_disk(store: Path, db_url: str, tmp_path: Path):
    """A 256 KB filesystem for the data directory: too small for the snapshot of a ~0.7 MB store."""
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(tiny)], check=True)
    try:
        code, result, _ = doctor(store, db_url, tiny)
        check = by_name(result)["snapshot space"]
        assert code == ExitCode.USAGE
        assert check["status"] == "fail" and "MB free" in check["detail"]
        assert "data_dir" in check["advice"]
    finally:
        subprocess.run(["umount", str(tiny)], check=True)


def test_role_statement_timeout_is_reported(store: Path, pg: PgServer, db_url: str, data_dir: Path):
    """A role-level statement_timeout (Supabase sets one per role) would cut an index build."""
    database = db_url.rsplit("/", 1)[1]
    with pg.admin() as admin:
        admin.execute("DROP ROLE IF EXISTS doctor_slow")
        admin.execute("CREATE ROLE doctor_slow LOGIN SUPERUSER PASSWORD 'slow-pw'")
        admin.execute(
            f"ALTER ROLE doctor_slow IN DATABASE \"{database}\" SET statement_timeout = '7s'"
        )
    try:
        url = db_url.replace(f"postgres:{pg.password}@", "doctor_slow:slow-pw@")
        code, result, _ = doctor(store, url, data_dir)
        checks = by_name(result)
        assert checks["statement timeout"]["status"] == "warn", checks["statement timeout"]
        assert "7s" in checks["statement timeout"]["detail"]
        assert checks["connection kind"]["status"] == "ok"
        assert code == ExitCode.OK  # a warning does not fail the preflight
    finally:
        with pg.admin() as admin:
            admin.execute(f'ALTER ROLE doctor_slow IN DATABASE "{database}" RESET ALL')
            admin.execute("DROP ROLE doctor_slow")


def test_connection_that_refuses_set_is_reported_as_a_pooler(
    store: Path, pg: PgServer, db_url: str, data_dir: Path
):
    """A transaction-pooler-like connection (tests/support/set_refusing_proxy.py): the
    migration needs SET LOCAL for its index builds, so doctor fails it with the fix."""
    from tests.support.set_refusing_proxy import SetRefusingProxy

    with SetRefusingProxy(pg.port) as proxy:
        url = db_url.replace(f"127.0.0.1:{pg.port}", f"127.0.0.1:{proxy.port}")
        code, result, _ = doctor(store, url, data_dir)
        assert proxy.refused >= 1
    checks = by_name(result)
    kind = checks["connection kind"]
    assert kind["status"] == "fail", kind
    assert "SET refused" in kind["detail"] and "not supported by this pooler" in kind["detail"]
    assert "session-pooler" in kind["advice"]
    assert checks["target reachable"]["status"] == "ok"  # everything else went through
    assert code == ExitCode.CONNECTION
