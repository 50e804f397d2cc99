"""One test, two transports: the same target database reached directly or over REST.

A `Target` says how the CLI reaches the database (`args` + `env`) and keeps the superuser
URL for the test's own SQL checks. Over REST the schema is applied first, as a user does by
pasting `rbmigrate bootstrap --print-sql` into the Supabase SQL editor, and a PostgREST
gateway (tests/support/gateway.py) stands in front of the database.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import psycopg

from rbmigrate.target.schema import apply_schema
from tests.support.gateway import SERVICE_ROLE_KEY, TEST_JWT_SECRET, Gateway

KEY_ENV = "RBM_TEST_SUPABASE_KEY"
TRANSPORTS = ("direct", "rest")


@dataclass
class Target:
    kind: str  # direct | rest
    db_url: str  # superuser URL of the same database, for the test's own checks
    args: list[str]  # CLI flags that select this target
    env: dict[str, str] = field(default_factory=dict)
    gateway: Gateway | None = None

    @property
    def rest(self) -> bool:
        return self.kind == "rest"


def apply(db_url: str, dimension: int = 384, schema: str = "public") -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        apply_schema(conn, schema, dimension)


@contextmanager
def rest_target(
    db_url: str, *, key: str = SERVICE_ROLE_KEY, schema: bool = True, **gateway_kw: object
) -> Iterator[Target]:
    if schema:
        apply(db_url)
    with Gateway(db_url, TEST_JWT_SECRET, **gateway_kw) as gw:  # type: ignore[arg-type]
        yield Target(
            "rest",
            db_url,
            ["--supabase-url", gw.url, "--supabase-key-env", KEY_ENV],
            {KEY_ENV: key},
            gw,
        )


@contextmanager
def make_target(kind: str, db_url: str) -> Iterator[Target]:
    if kind == "rest":
        with rest_target(db_url) as target:
            yield target
    else:
        yield Target("direct", db_url, ["--db-url", db_url])
