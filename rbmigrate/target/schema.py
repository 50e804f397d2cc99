"""schema.sql: find it, render it for a dimension and schema, inspect a database, apply it.

The objects the bootstrap expects are read from schema.sql itself, so the report of what
exists and what will be created can never drift from what the file creates.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg

from rbmigrate.config import IDENTIFIER_RE
from rbmigrate.errors import SchemaError

DEFAULT_DIMENSION = 384
SCHEMA_VERSION = 1
DATA_TABLES = ("reasoning_traces", "memory_items")
VECTOR_COLUMNS = (("memory_items", "content_embedding"), ("reasoning_traces", "task_embedding"))
UUID_COLUMNS = (("memory_items", "id"), ("memory_items", "trace_id"), ("reasoning_traces", "id"))
LEAKY_POLICY = "Allow all operations for authenticated users"


@lru_cache(maxsize=1)
def schema_template() -> str:
    """The packaged schema.sql (wheel), or the repository's top-level one (editable install)."""
    packaged = resources.files("rbmigrate").joinpath("_data/schema.sql")
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    top = Path(__file__).resolve().parents[2] / "schema.sql"
    if top.is_file():
        return top.read_text(encoding="utf-8")
    raise SchemaError("schema.sql is missing from this installation.", hint="reinstall rbmigrate.")


def quote_ident(name: str) -> str:
    if not IDENTIFIER_RE.match(name):
        raise SchemaError(f"{name!r} is not an allowed SQL identifier.")
    return f'"{name}"'


def render_schema(dimension: int = DEFAULT_DIMENSION, schema: str = "public") -> str:
    if not 1 <= dimension <= 16000:
        raise SchemaError(f"vector dimension {dimension} is outside 1..16000.")
    sql = schema_template().replace("vector(384)", f"vector({dimension})")
    if schema != "public":
        quoted = quote_ident(schema)
        sql = sql.replace(
            "SET search_path = public, extensions",
            f"SET search_path = {quoted}, public, extensions",
        )
        sql = re.sub(r"\bpublic\.", f"{quoted}.", sql)
        sql = sql.replace(
            "CREATE SCHEMA IF NOT EXISTS public;", f"CREATE SCHEMA IF NOT EXISTS {quoted};"
        )
        sql = sql.replace("ON SCHEMA public TO", f"ON SCHEMA {quoted} TO")
    return sql


@dataclass(frozen=True)
class Manifest:
    tables: tuple[str, ...]
    indexes: tuple[str, ...]
    functions: tuple[str, ...]
    triggers: tuple[tuple[str, str], ...]
    policies: tuple[tuple[str, str], ...]
    columns: tuple[tuple[str, str], ...]


@lru_cache(maxsize=1)
def manifest() -> Manifest:
    sql = schema_template()
    tables = tuple(re.findall(r"CREATE TABLE IF NOT EXISTS public\.(\w+)", sql))
    indexes = tuple(re.findall(r"CREATE (?:UNIQUE )?INDEX IF NOT EXISTS (\w+)", sql))
    functions = tuple(
        dict.fromkeys(re.findall(r"CREATE (?:OR REPLACE )?FUNCTION public\.(\w+)", sql))
    )
    triggers = tuple(
        (t, tbl) for t, tbl in re.findall(r"CREATE TRIGGER (\w+) .*? ON public\.(\w+)", sql)
    )
    policies = tuple((p, t) for p, t in re.findall(r"CREATE POLICY (\w+) ON public\.(\w+)", sql))
    columns = tuple(
        (t, c)
        for t, c in re.findall(r"ALTER TABLE public\.(\w+) ADD COLUMN IF NOT EXISTS (\w+)", sql)
    )
    return Manifest(tables, indexes, functions, triggers, policies, columns)


@dataclass
class SchemaStatus:
    schema: str
    dimension_wanted: int
    server_version: str = ""
    pgvector_version: str | None = None
    pgvector_available: str | None = None
    is_supabase: bool = False
    present: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    dimensions: dict[str, int | None] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.missing and not self.problems

    @property
    def compatible(self) -> bool:
        return not self.problems

    @property
    def existing_dimension(self) -> int | None:
        return self.dimensions.get("memory_items.content_embedding")

    def state(self) -> str:
        """incompatible | missing (no table yet) | partial | ready."""
        if self.problems:
            return "incompatible"
        if not any(p.startswith("table ") for p in self.present):
            return "missing"
        return "partial" if self.missing else "ready"

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["state"] = self.state()
        return d


@dataclass
class CatalogFacts:
    """What the catalog says about one schema: read over a connection, or over REST from
    `rbmigrate_schema_info()`, so both transports judge a schema by the same rules."""

    server_version: str = ""
    pgvector_version: str | None = None
    pgvector_available: str | None = None
    is_supabase: bool = False
    tables: set[str] = field(default_factory=set)
    rls: dict[str, bool] = field(default_factory=dict)
    columns: dict[tuple[str, str], tuple[str, int]] = field(default_factory=dict)
    indexes: set[str] = field(default_factory=set)
    functions: set[str] = field(default_factory=set)
    triggers: set[tuple[str, str]] = field(default_factory=set)
    policies: set[tuple[str, str]] = field(default_factory=set)

    @classmethod
    def from_info(cls, info: dict[str, Any]) -> CatalogFacts:
        """From the JSON `rbmigrate_schema_info()` returns."""
        tables = [tuple(t) for t in info.get("tables") or []]
        return cls(
            server_version=str(info.get("server_version") or ""),
            pgvector_version=info.get("pgvector_version"),
            pgvector_available=info.get("pgvector_available"),
            is_supabase=bool(info.get("is_supabase")),
            tables={str(t[0]) for t in tables},
            rls={str(t[0]): bool(t[1]) for t in tables},
            columns={
                (str(c[0]), str(c[1])): (str(c[2]), int(c[3])) for c in info.get("columns") or []
            },
            indexes={str(i) for i in info.get("indexes") or []},
            functions={str(f) for f in info.get("functions") or []},
            triggers={(str(t[0]), str(t[1])) for t in info.get("triggers") or []},
            policies={(str(p[0]), str(p[1])) for p in info.get("policies") or []},
        )


def catalog_facts(conn: psycopg.Connection[Any], schema: str) -> CatalogFacts:
    facts = CatalogFacts()
    version = conn.execute("SHOW server_version").fetchone()
    facts.server_version = str(version[0]) if version else ""
    row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
    facts.pgvector_version = row[0] if row else None
    row = conn.execute(
        "SELECT default_version FROM pg_available_extensions WHERE name = 'vector'"
    ).fetchone()
    facts.pgvector_available = row[0] if row else None
    supabase = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'supabase_admin')"
    ).fetchone()
    facts.is_supabase = bool(supabase and supabase[0])
    facts.tables = {
        r[0]
        for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,))
    }
    facts.columns = {
        (r[0], r[1]): (r[2], r[3])
        for r in conn.execute(
            """SELECT c.relname, a.attname, t.typname, a.atttypmod
           FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
           JOIN pg_type t ON t.oid = a.atttypid
           JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = %s AND a.attnum > 0 AND NOT a.attisdropped""",
            (schema,),
        )
    }
    facts.indexes = {
        r[0]
        for r in conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = %s", (schema,))
    }
    facts.functions = {
        r[0]
        for r in conn.execute(
            "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = %s",
            (schema,),
        )
    }
    facts.triggers = {
        (r[0], r[1])
        for r in conn.execute(
            """SELECT t.tgname, c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
           JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s""",
            (schema,),
        )
    }
    facts.policies = {
        (r[0], r[1])
        for r in conn.execute(
            "SELECT policyname, tablename FROM pg_policies WHERE schemaname = %s", (schema,)
        )
    }
    facts.rls = {
        r[0]: r[1]
        for r in conn.execute(
            """SELECT c.relname, c.relrowsecurity FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = %s AND c.relkind = 'r'""",
            (schema,),
        )
    }
    return facts


def inspect_schema(conn: psycopg.Connection[Any], schema: str, dimension: int) -> SchemaStatus:
    """What exists, what is missing, and whether what exists can hold this source."""
    return status_from_facts(catalog_facts(conn, schema), schema, dimension)


def status_from_facts(facts: CatalogFacts, schema: str, dimension: int) -> SchemaStatus:
    m = manifest()
    status = SchemaStatus(schema=schema, dimension_wanted=dimension)
    status.server_version = facts.server_version
    status.pgvector_version = facts.pgvector_version
    status.pgvector_available = facts.pgvector_available
    status.is_supabase = facts.is_supabase

    def mark(name: str, ok: bool) -> None:
        (status.present if ok else status.missing).append(name)

    mark("extension vector", status.pgvector_version is not None)
    tables, columns = facts.tables, facts.columns
    for t in m.tables:
        mark(f"table {t}", t in tables)
    for t, c in m.columns:
        if t in tables:
            mark(f"column {t}.{c}", (t, c) in columns)
    for i in m.indexes:
        mark(f"index {i}", i in facts.indexes)
    for f in m.functions:
        mark(f"function {f}", f in facts.functions)
    for trig, tbl in m.triggers:
        mark(f"trigger {trig} on {tbl}", (trig, tbl) in facts.triggers)
    for pol, tbl in m.policies:
        mark(f"policy {pol} on {tbl}", (pol, tbl) in facts.policies)
    for t in m.tables:
        if t in tables:
            mark(f"row level security on {t}", bool(facts.rls.get(t)))
    if any(p == LEAKY_POLICY for p, _t in facts.policies):
        status.missing.append(
            "removal of the upstream policy that shows every workspace to every user"
        )

    for t, c in VECTOR_COLUMNS:
        if (t, c) in columns:
            type_name, typmod = columns[(t, c)]
            status.dimensions[f"{t}.{c}"] = typmod if typmod and typmod > 0 else None
            if type_name != "vector":
                status.problems.append(f"{schema}.{t}.{c} is {type_name}, not vector")
            elif typmod and typmod > 0 and typmod != dimension:
                status.problems.append(
                    f"{schema}.{t}.{c} is vector({typmod}) but the source needs vector({dimension})"
                )
    for t, c in UUID_COLUMNS:
        if (t, c) in columns and columns[(t, c)][0] != "uuid":
            status.problems.append(f"{schema}.{t}.{c} is {columns[(t, c)][0]}, not uuid")
    if status.pgvector_version is None and status.pgvector_available is None:
        status.problems.append("the pgvector extension is not available on this server")
    return status


def incompatible_error(status: SchemaStatus) -> SchemaError:
    return SchemaError(
        "the target schema cannot hold this source: " + "; ".join(status.problems) + ".",
        title="Incompatible schema",
        hint="migrate into another schema ([target] schema), re-embed with a model of the target's "
        "dimension, or drop the existing tables if they hold nothing you need.",
    )


def apply_schema(conn: psycopg.Connection[Any], schema: str, dimension: int) -> SchemaStatus:
    """Apply schema.sql in one transaction; refuse first if the existing schema cannot fit."""
    before = inspect_schema(conn, schema, dimension)
    if before.problems:
        raise incompatible_error(before)
    sql = render_schema(dimension, schema)
    try:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('rbmigrate.bootstrap'))")
            conn.execute(sql.encode("utf-8"))
    except psycopg.errors.InsufficientPrivilege as exc:
        raise SchemaError(
            f"the database user may not create the schema: {str(exc).strip().splitlines()[0]}.",
            title="Not allowed",
            hint="bootstrap with the postgres user (Supabase: the direct connection string), or "
            "export the SQL with `rbmigrate bootstrap --print-sql` and run it in the SQL editor.",
        ) from None
    except psycopg.Error as exc:
        raise SchemaError(
            f"applying schema.sql failed: {str(exc).strip().splitlines()[0]}.",
            title="Bootstrap failed",
            hint="nothing was changed (the bootstrap runs in one transaction).",
        ) from None
    return inspect_schema(conn, schema, dimension)
