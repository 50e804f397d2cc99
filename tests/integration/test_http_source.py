"""A Chroma server source: read through HttpClient, no snapshot, same plan as the directory."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.support.cases import write_cases_store
from tests.support.chroma_server import chroma_server
from tests.support.cli import run_cli


def test_plan_through_a_chroma_server_matches_the_directory(tmp_path: Path, db_url, data_dir):
    store = write_cases_store(tmp_path / "cases", damage=False)
    served = tmp_path / "served"
    shutil.copytree(store, served)
    direct = run_cli(
        [
            "--headless",
            "plan",
            "--chroma-path",
            str(store),
            "--db-url",
            db_url,
            "--max-rejects",
            "-1",
            "--json",
        ],
        data_dir,
    ).json()
    with chroma_server(served) as url:
        res = run_cli(
            [
                "--headless",
                "plan",
                "--chroma-url",
                url,
                "--db-url",
                db_url,
                "--max-rejects",
                "-1",
                "--json",
            ],
            data_dir,
        )
    assert res.code == 0, res.err
    remote = res.json()
    assert remote["source"]["kind"] == "http" and remote["source"]["location"] == url
    assert remote["source"]["chroma_format"].startswith("Chroma server")
    for key in ("new", "changed", "unchanged", "invalid", "skipped"):
        assert remote["plan"][key] == direct["plan"][key], key
    assert remote["plan"]["invalid_by_code"].keys() == direct["plan"]["invalid_by_code"].keys()
    run_dir = Path(remote["run_dir"])
    assert not (run_dir / "snapshot").exists()


def test_unreachable_chroma_server_exit_3(db_url, data_dir):
    res = run_cli(
        ["--headless", "plan", "--chroma-url", "http://127.0.0.1:9", "--db-url", db_url], data_dir
    )
    assert res.code == 3
    assert "cannot reach the Chroma server" in res.err
