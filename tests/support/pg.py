"""A PostgreSQL server for the whole test session, reached over TCP with a password."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

import psycopg

from rbmigrate.target.embedded import EmbeddedPostgres

PASSWORD = "test-Pa55word-rbm"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PgServer:
    server: EmbeddedPostgres
    port: int
    password: str = PASSWORD

    def url(
        self, database: str = "postgres", user: str = "postgres", password: str | None = None
    ) -> str:
        pw = self.password if password is None else password
        return f"postgresql://{user}:{pw}@127.0.0.1:{self.port}/{database}"

    def admin(self) -> psycopg.Connection:
        return psycopg.connect(self.url(), autocommit=True)

    def create_database(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')

    def drop_database(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def restart(self) -> None:
        self.server.restart()

    def stop(self) -> None:
        self.server.destroy()


def start_test_server(base: Path) -> PgServer:
    port = free_port()
    server = EmbeddedPostgres(base / "cluster", port=port, password=PASSWORD)
    server.start()
    return PgServer(server, port)
