"""Open PostgreSQL connections and turn driver errors into messages a person can act on."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from pgvector.psycopg import register_vector
from psycopg import sql

from rbmigrate.config import Config, mask_dsn, resolve_secret
from rbmigrate.errors import ConfigError, SchemaError, TargetConnectionError
from rbmigrate.target.embedded import EmbeddedPostgres

APP_NAME = "rbmigrate"


def _clean(message: str, dsn: str) -> str:
    text = message.strip().splitlines()[0] if message.strip() else "unknown error"
    password = re.match(r"^[a-z]+://[^:/@]*:([^@]*)@", dsn)
    if password and password.group(1):
        text = text.replace(password.group(1), "***")
    return text[:400]


def connection_error(exc: BaseException, dsn: str) -> TargetConnectionError:
    """Map a psycopg connection failure to what went wrong and what to do."""
    shown = mask_dsn(dsn)
    text = _clean(str(exc), dsn)
    low = text.lower()
    if "password authentication failed" in low or "no password supplied" in low or "sasl" in low:
        return TargetConnectionError(
            f"PostgreSQL rejected the credentials for {shown}: {text}",
            title="Authentication failed",
            hint="check the user and password in the connection string (e.g. SUPABASE_DB_URL).",
        )
    if "does not exist" in low and "database" in low:
        return TargetConnectionError(
            f"{shown}: {text}",
            title="No such database",
            hint="check the database name at the end of the connection string.",
        )
    if "role" in low and "does not exist" in low:
        return TargetConnectionError(
            f"{shown}: {text}",
            title="No such user",
            hint="check the user name in the connection string.",
        )
    return TargetConnectionError(
        f"cannot connect to PostgreSQL at {shown}: {text}",
        title="Cannot connect",
        hint="check host, port and network; Supabase needs the direct or session-pooler URL.",
    )


def connect(
    dsn: str,
    *,
    autocommit: bool = False,
    vector: bool = True,
    timeout: int = 10,
    schema: str = "public",
) -> psycopg.Connection[Any]:
    try:
        conn = psycopg.connect(
            dsn, autocommit=autocommit, connect_timeout=timeout, application_name=APP_NAME
        )
    except psycopg.OperationalError as exc:
        raise connection_error(exc, dsn) from None
    except psycopg.ProgrammingError as exc:
        raise TargetConnectionError(
            f"invalid PostgreSQL URL {mask_dsn(dsn)}: {_clean(str(exc), dsn)}",
            title="Bad connection string",
        ) from None
    # pgvector lives in `extensions` on Supabase (and in our bootstrap), `public` elsewhere
    path = sql.SQL(", ").join(
        sql.Identifier(s) for s in dict.fromkeys((schema, "public", "extensions"))
    )
    conn.execute(sql.SQL("SET search_path TO {}").format(path))
    if not autocommit:
        conn.commit()
    if vector:
        try:
            register_vector(conn)
        except psycopg.ProgrammingError:
            # the vector extension is not installed yet (before bootstrap)
            if not autocommit:
                conn.rollback()
    return conn


@dataclass
class ResolvedTarget:
    """Where the target is: a DSN, and the embedded server when we run one."""

    dsn: str
    kind: str  # embedded | postgres
    embedded: EmbeddedPostgres | None = None

    def shown(self) -> str:
        return mask_dsn(self.dsn)

    def close(self) -> None:
        if self.embedded is not None:
            self.embedded.stop_if_owner()


def resolve_target(cfg: Config) -> ResolvedTarget:
    """Turn [target] db_url into a DSN, starting the embedded server if that is the target."""
    raw = cfg.target.db_url
    if not raw and not cfg.target.supabase_url:
        raw = "embedded"
    value = resolve_secret(raw, "[target] db_url") if raw else ""
    if value == "embedded" or value.startswith("embedded:"):
        where = Path(value.split(":", 1)[1]).expanduser() if ":" in value else cfg.data_dir() / "pg"
        server = EmbeddedPostgres(where)
        return ResolvedTarget(server.start(), "embedded", server)
    if value and not re.match(r"^postgres(ql)?://", value):
        raise ConfigError(
            f"[target] db_url must be embedded, embedded:DIR or a postgresql:// URL; "
            f"got {mask_dsn(value)!r}" + (f" (from {raw})" if raw != value else "") + ".",
            title="Bad database URL",
        )
    if not value:
        raise SchemaError(
            "no direct PostgreSQL connection is configured (db_url is empty).",
            title="No database URL",
            hint="set --db-url (or SUPABASE_DB_URL); the REST transport needs [target] supabase_url.",
        )
    return ResolvedTarget(value, "postgres")
