"""Shared fixtures: a real PostgreSQL + pgvector (pgserver binaries), real Chroma stores."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.pg import PgServer, start_test_server

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

REPO = Path(__file__).resolve().parents[1]
# small stores of older Chroma formats, copied from the project's shared fixtures so that a
# fresh clone has them (tests/fixtures/formats/README.md says what each is)
SHARED_FIXTURES = REPO / "tests" / "fixtures" / "formats"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--long", action="store_true", default=False, help="run torture/benchmark-sized tests"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--long"):
        return
    skip = pytest.mark.skip(reason="long test: run with --long")
    for item in items:
        if "long" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgServer]:
    server = start_test_server(tmp_path_factory.mktemp("pg"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def db_url(pg: PgServer) -> Iterator[str]:
    """A fresh, empty database for this test (TCP + password, like a remote server)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    pg.create_database(name)
    yield pg.url(name)
    pg.drop_database(name)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "rbm-data"
    d.mkdir()
    return d


@pytest.fixture
def shared_fixtures() -> Path:
    assert SHARED_FIXTURES.is_dir(), f"{SHARED_FIXTURES} is missing from the checkout"
    return SHARED_FIXTURES
