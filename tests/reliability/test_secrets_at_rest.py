"""After real runs, over both transports: no secret in any file rbmigrate wrote, in its output,
or in its errors; every run file private to its owner.

The password and the service-role key are real ones (the test database's and a signed JWT),
so a leak anywhere would be found by a plain substring search.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tests.support.cli import run_cli
from tests.support.gateway import SERVICE_ROLE_KEY
from tests.support.pg import PASSWORD, PgServer
from tests.support.stores import item, rb_metadata, write_store
from tests.support.targets import make_target


@pytest.fixture
def store(tmp_path: Path) -> Path:
    recs = [
        (f"m{i}", f"T{i}\nD\nC", rb_metadata(trace_id=f"t{i // 4}", item=item(f"m{i}")), None)
        for i in range(40)
    ]
    recs.append(("bad", "x", rb_metadata(outcome="meh", item=item("bad")), None))  # a reject
    return write_store(tmp_path / "store", recs)


def written_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and "pg" not in p.relative_to(root).parts]


@pytest.mark.parametrize("transport", ["direct", "rest"])
def test_no_secret_in_any_run_file_and_files_are_private(
    transport: str, store: Path, db_url: str, data_dir: Path, pg: PgServer
) -> None:
    secrets = [PASSWORD, SERVICE_ROLE_KEY, SERVICE_ROLE_KEY.split(".")[2]]
    outputs = []
    with make_target(transport, db_url) as target:
        base = ["--chroma-path", str(store), *target.args, "--max-rejects", "-1"]
        for cmd in (["plan"], ["migrate", "--json"], ["verify"], ["doctor"]):
            res = run_cli(["--headless", *cmd, *base], data_dir, **target.env)
            outputs += [res.out, res.err]
        # an error path too: a wrong password / a wrong key
        if transport == "direct":
            wrong = db_url.replace(PASSWORD, "Wr0ng-" + PASSWORD)
            res = run_cli(["--headless", "plan", "--chroma-path", str(store), "--db-url", wrong],
                          data_dir)  # fmt: skip
            secrets.append("Wr0ng-" + PASSWORD)
        else:
            bad_key = SERVICE_ROLE_KEY[:-6] + "AAAAAA"
            res = run_cli(["--headless", "plan", *base], data_dir, **{**target.env,
                          next(iter(target.env)): bad_key})  # fmt: skip
            secrets.append(bad_key)
        assert res.code == 3, res.err
        outputs += [res.out, res.err]
    files = written_files(data_dir)
    runs = [p for p in files if "runs" in p.parts]
    assert any(p.name == "report.json" for p in runs) and any(
        p.name == "rejects.jsonl" for p in runs
    ), [p.name for p in runs]
    for p in files:
        text = p.read_bytes().decode("utf-8", "replace")
        for s in secrets:
            assert s not in text, f"a secret in {p}"
    for p in runs:
        assert stat.S_IMODE(p.stat().st_mode) & 0o077 == 0, f"{p} is readable by others"
    for text in outputs:
        for s in secrets:
            assert s not in text, "a secret in rbmigrate's output"
