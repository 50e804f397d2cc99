"""Command-line behaviour that is not a migration: init, version, help."""

from __future__ import annotations

import stat
import tomllib
from pathlib import Path

from tests.support.cli import run_cli

REPO = Path(__file__).resolve().parents[2]


def test_init_writes_a_private_starter_config_with_env_references(tmp_path: Path, data_dir):
    (tmp_path / "chroma_data").mkdir()
    res = run_cli(
        ["init", "--db-url", "postgresql://me:s3cret-pw@db.example.com:5432/postgres"],
        data_dir,
        cwd=tmp_path,
    )
    assert res.code == 0, res.err
    cfg = tmp_path / "rbmigrate.toml"
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o600
    text = cfg.read_text()
    assert "s3cret-pw" not in text and "s3cret-pw" not in res.out
    data = tomllib.loads(text)
    assert data["target"]["db_url"] == "env:SUPABASE_DB_URL"
    assert data["source"]["chroma_path"] == "./chroma_data"
    assert "SUPABASE_DB_URL" in res.out
    again = run_cli(["init"], data_dir, cwd=tmp_path)
    assert again.code == 2 and "--force" in again.err


def test_version_and_help(data_dir):
    assert run_cli(["--version"], data_dir).out.startswith("rbmigrate ")
    out = run_cli(["--help"], data_dir).out
    for word in ("plan", "migrate", "verify", "compare", "bootstrap", "rollback", "exit codes"):
        assert word in out


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    quick = readme.split("## Quickstart", 1)[1].split("##", 1)[0]
    lines = [
        ln.strip() for ln in quick.splitlines() if ln.strip().startswith(("pip ", "python", "."))
    ]
    assert len(lines) == 2, lines
    assert lines[1] in ci
