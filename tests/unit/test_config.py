"""Config: precedence, secrets as env references, clear errors with lines, private files."""

from __future__ import annotations

import stat
import tomllib
from pathlib import Path

import pytest

from rbmigrate.config import (
    Config,
    documented_keys,
    load,
    mask_dsn,
    resolve_secret,
    starter_toml,
    write_private,
)
from rbmigrate.errors import ConfigError, ExitCode

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.toml"
    p.write_text(text)
    return p


def test_defaults_without_anything(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load(environ={})
    assert cfg.target.db_url == "embedded"
    assert cfg.migration.batch_size == 2000


def test_precedence_flags_over_env_over_file(tmp_path):
    p = write(
        tmp_path,
        '[migration]\nbatch_size = 100\nmax_rejects = 7\n[source]\ntimezone = "Europe/Paris"\n',
    )
    env = {"RBMIGRATE_BATCH_SIZE": "200", "RBMIGRATE_TIMEZONE": "Asia/Tokyo"}
    cfg = load(p, environ=env, overrides={"migration": {"batch_size": 300}})
    assert cfg.migration.batch_size == 300  # flag
    assert cfg.source.timezone == "Asia/Tokyo"  # env over file
    assert cfg.migration.max_rejects == 7  # file over default


def test_secrets_from_environment_stay_references(tmp_path):
    env = {"SUPABASE_KEY": "sk-very-secret", "SUPABASE_DB_URL": "postgresql://u:pw@h/db"}
    cfg = load(write(tmp_path, ""), environ=env)
    assert cfg.target.supabase_key == "env:SUPABASE_KEY"
    assert cfg.target.db_url == "env:SUPABASE_DB_URL"
    red = str(cfg.redacted())
    assert "sk-very-secret" not in red and "pw@" not in red


def test_written_config_never_holds_a_secret(tmp_path):
    cfg = Config()
    cfg.target.db_url = "postgresql://user:hunter2@db.example.com:5432/postgres"
    cfg.target.supabase_key = "eyJhbGciOi-secret"
    text = starter_toml(cfg)
    assert "hunter2" not in text and "eyJhbGciOi" not in text
    data = tomllib.loads(text)
    assert data["target"]["db_url"] == "env:SUPABASE_DB_URL"
    assert data["target"]["supabase_key"] == "env:SUPABASE_KEY"


def test_redacted_masks_literal_dsn_password():
    cfg = Config()
    cfg.target.db_url = "postgresql://user:hunter2@db.example.com/postgres"
    assert cfg.redacted()["target"]["db_url"] == "postgresql://user:***@db.example.com/postgres"
    assert mask_dsn("host=x password=abc user=y") == "host=x password=*** user=y"


def test_unknown_key_names_key_and_line(tmp_path):
    p = write(
        tmp_path, '[source]\ntimezone = "UTC"\n\n[migration]\nbatch_size = 10\nbatchsize = 20\n'
    )
    with pytest.raises(ConfigError) as err:
        load(p, environ={})
    assert "line 6" in err.value.message and "batchsize" in err.value.message
    assert "batch_size" in (err.value.hint or "")
    assert err.value.exit_code == ExitCode.USAGE


def test_type_error_names_key_and_line(tmp_path):
    p = write(tmp_path, '[migration]\n\nbatch_size = "2000"\n')
    with pytest.raises(ConfigError) as err:
        load(p, environ={})
    assert "line 3" in err.value.message and "batch_size" in err.value.message
    assert "integer" in err.value.message


def test_unknown_section(tmp_path):
    with pytest.raises(ConfigError) as err:
        load(write(tmp_path, "[sorce]\nx = 1\n"), environ={})
    assert "[sorce]" in err.value.message and "source" in (err.value.hint or "")


def test_invalid_toml_reports_position(tmp_path):
    with pytest.raises(ConfigError) as err:
        load(write(tmp_path, "[source\n"), environ={})
    assert "line 1" in err.value.message


@pytest.mark.parametrize(
    "section,key,value,fragment",
    [
        ("migration", "batch_size", 9000, "between 1 and 5000"),
        ("source", "timezone", "Mars/Olympus", "time zone"),
        ("target", "schema", "x; drop table y", "identifier"),
        ("target", "db_url", "mysql://x", "db_url"),
        ("migration", "outcome_map", {"ok": "great"}, "outcome_map"),
    ],
)
def test_values_are_validated(section, key, value, fragment):
    with pytest.raises(ConfigError) as err:
        load(environ={}, overrides={section: {key: value}})
    assert fragment in err.value.message


def test_missing_env_reference_is_a_clear_error():
    with pytest.raises(ConfigError) as err:
        resolve_secret("env:RBM_NOT_SET_ANYWHERE", "[target] supabase_key")
    assert "RBM_NOT_SET_ANYWHERE" in err.value.message


def test_written_files_are_private(tmp_path):
    p = write_private(tmp_path / "x.toml", "a = 1\n")
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    with pytest.raises(ConfigError):
        write_private(p, "b = 2\n")


def test_example_documents_every_key():
    example = tomllib.loads((REPO / "config.example.toml").read_text())
    for section, keys in documented_keys().items():
        assert set(example[section]) == set(keys), section
    # and the example is itself a valid config equal to the defaults
    cfg = load(REPO / "config.example.toml", environ={})
    assert cfg.redacted() == Config().redacted()
