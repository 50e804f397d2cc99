"""A PostgREST-protocol test gateway: the HTTP layer of PostgREST, over a real PostgreSQL.

No PostgREST binary can be installed where rbmigrate is tested, so the REST transport
(supabase-py / postgrest-py) is tested against this stand-in. It speaks the PostgREST wire
protocol as supabase-py 2.x sends it, and every query runs in the real database: the
gateway only parses the request, builds one parameterised statement (identifiers quoted
with ``psycopg.sql``, every request value a bound parameter, JSON bodies converted by
PostgreSQL itself through ``json_populate_recordset`` / ``json_to_record``), and switches
role and JWT claims per request exactly as PostgREST does.

Usage::

    with Gateway(dsn=superuser_url, jwt_secret=TEST_JWT_SECRET) as gw:
        client = supabase.create_client(gw.url, SERVICE_ROLE_KEY)

Covered
-------
* Paths ``/rest/v1/<table>`` and ``/rest/v1/rpc/<function>`` (``gw.url`` is the project
  URL that ``create_client`` takes; it appends ``/rest/v1``).
* Auth: ``Authorization: Bearer <jwt>`` wins over the ``apikey`` header (what Supabase's
  API gateway forwards); no token means the anon role. HS256 only, ``exp`` checked with 30 s
  of leeway (``aud`` not checked); a bad signature, malformed or expired token is a 401
  ``PGRST301`` with ``WWW-Authenticate``. A token without a ``role`` claim runs as anon.
* Per request, in ONE transaction on a pooled superuser connection: ``BEGIN`` (``READ ONLY``
  for GET/HEAD and for stable/immutable functions, as PostgREST), ``set_config('role', ..,
  true)`` (= ``SET LOCAL ROLE``), ``request.jwt.claims`` (the claims as JSON),
  ``request.jwt.claim.role``, ``request.method``, ``request.path``, ``request.headers``,
  ``search_path`` (profile schema + ``extra_search_path``), the statement, ``COMMIT``.
* Schemas: ``Accept-Profile`` (GET/HEAD) / ``Content-Profile`` (others) chooses among the
  configured schemas (the first is the default); any other is a 406 ``PGRST106``.
* Read (GET/HEAD): ``select=`` with ``*``, columns, ``alias:column`` and ``column::type``;
  horizontal filters ``eq neq gt gte lt lte like ilike match imatch is in cs cd ov
  isdistinct``, ``not.`` negation, ``(any)``/``(all)`` modifiers, ``*`` as the like
  wildcard, ``or=(...)``/``and=(...)`` logic trees (nested, ``not.`` too); ``order=`` with
  ``asc/desc`` and ``nullsfirst/nullslast`` over several columns; ``limit``/``offset`` and
  the ``Range`` header (intersected, as PostgREST), capped by ``max_rows`` (default 1000,
  ``None`` for no cap); ``Prefer: count=exact`` (``planned``/``estimated`` are answered
  exactly) with PostgREST's ``Content-Range`` / 200 / 206 / 416 rules; HEAD; ``Accept:
  application/vnd.pgrst.object+json`` (``.single()``, 406 ``PGRST116`` unless one row).
* Write: POST insert of an object or an array (``columns=``; without it all objects must
  have the same keys, ``PGRST102``; unknown columns are ``PGRST204``), upsert with
  ``Prefer: resolution=merge-duplicates|ignore-duplicates`` and ``on_conflict=`` (default:
  the primary key), ``Prefer: missing=default``; PATCH with filters; DELETE with filters;
  ``Prefer: return=representation|minimal`` (``headers-only`` is treated as minimal) with
  ``select=`` for the returned columns, ``count=exact``, ``handling=strict`` +
  ``max-affected=``. Like Supabase (pg-safeupdate), PATCH/DELETE without a filter is a 400
  (``safeupdate=False`` turns that off). Status codes: 201 / 200 / 204.
* RPC: POST with a JSON object of named arguments, GET/HEAD with arguments in the query
  string; overloads chosen by argument names (defaults honoured), ``PGRST202`` (404) when
  none matches, ``PGRST203`` (300) when several do; a single unnamed json/jsonb argument
  takes the whole body. Set-returning and table functions return a JSON array (with
  filters, order, paging, count and max_rows applied to it), a single composite an object,
  a scalar the JSON value, void a 204.
* Values are JSON in and out, converted by PostgreSQL: uuid, text, text[], jsonb, json,
  timestamptz (rendered in the session time zone, ``timezone=`` to force one), integer,
  bigint, double precision, boolean, numeric, and pgvector ``vector`` (in: a JSON array or
  the string ``"[1,2]"``; out: the string ``"[1,2]"``).
* Errors: ``{"code","message","details","hint"}``; SQLSTATEs mapped to HTTP statuses with
  PostgREST's table (23505/23503 409, 42501 403 for a non-anon role else 401, 42P01 and
  42883 404, 25006 405, P0001 400, 08*/53*/57P01 503, 09/25/2D/38/39/3B/40/54/55/57/58/F0/
  HV/P0/XX and 42P17 500, 21000 500 unless it is pg-safeupdate's, anything else 400 —
  PostgREST's default for an unlisted SQLSTATE is 400, not 500); malformed requests are 400
  ``PGRST100``; an unknown table is 404 ``PGRST205``; a database that cannot be reached is
  503 ``PGRST000``.
* Test hooks: ``fail_next(n, status=503)`` answers the next n requests with that status
  without touching the database; ``drop_next(n)`` closes the next n connections without an
  answer; ``requests`` is the list of ``(method, path)`` served, ``log`` the same with
  statuses and roles; ``errors`` holds tracebacks of gateway bugs (answered 500 ``GW500``).

Not covered (a request that needs one of these is answered 501 with code ``GW501``, never
silently answered wrong): embedded resources and spreads (``select=rel(*)``, ``...rel``,
filters/order/limit on ``rel.``), JSON path operators (``col->key``), aggregates
(``count()``, ``sum()``), full-text operators (``fts plfts phfts wfts``), CSV, GeoJSON,
``nulls=stripped``, ``EXPLAIN`` plans (``application/vnd.pgrst.plan``), OpenAPI (``GET
/rest/v1/``), PUT upserts, ``Prefer: params=single-object|multiple-objects``, ``tx=``,
``timezone=``, PATCH/DELETE with ``limit``/``order``, variadic arguments, functions
returning untyped ``record``, identifiers containing ``%`` or NUL. Also different from
PostgREST: the schema "cache" is read from the catalog on every request (no ``NOTIFY pgrst``
needed), there is no ``Location`` header, statement timeouts and pool settings of the real
server are not modelled, and ``aud`` is not verified.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar, cast
from urllib.parse import parse_qsl, unquote, urlsplit

import jwt
import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus

__all__ = [
    "ANON_KEY",
    "SERVICE_ROLE_KEY",
    "TEST_JWT_SECRET",
    "Gateway",
    "LoggedRequest",
    "make_jwt",
]

TEST_JWT_SECRET = "rbmigrate-test-gateway-jwt-secret-0123456789abcdef"
_ISSUED_AT = 1735689600  # 2025-01-01T00:00:00Z
_FAR_FUTURE = 4102444800  # 2100-01-01T00:00:00Z


def make_jwt(
    secret: str,
    role: str,
    workspace_id: str | None = None,
    exp: int | None = _FAR_FUTURE,
    **claims: Any,
) -> str:
    """An HS256 JWT shaped like Supabase's keys and user tokens.

    ``exp`` is absolute (seconds since the epoch; pass a past time for an expired token,
    ``None`` for none). ``workspace_id`` goes to ``app_metadata.workspace_id``, which the
    schema's RLS policies read. Extra keyword arguments are added as claims.
    """
    payload: dict[str, Any] = {"iss": "supabase", "role": role, "iat": _ISSUED_AT}
    if exp is not None:
        payload["exp"] = int(exp)
    if role == "authenticated":
        payload["aud"] = "authenticated"
        digest = hashlib.sha256(str(workspace_id).encode()).hexdigest()
        payload["sub"] = (
            f"{digest[:8]}-{digest[8:12]}-4{digest[13:16]}-8{digest[17:20]}-{digest[20:32]}"
        )
    if workspace_id is not None:
        payload["app_metadata"] = {"workspace_id": workspace_id}
    payload.update(claims)
    return jwt.encode(payload, secret, algorithm="HS256")


ANON_KEY = make_jwt(TEST_JWT_SECRET, "anon")
SERVICE_ROLE_KEY = make_jwt(TEST_JWT_SECRET, "service_role")

_JSON = "application/json; charset=utf-8"
_T = TypeVar("_T")
_Conn = psycopg.Connection[Any]
_OBJECT_MEDIA = "application/vnd.pgrst.object+json"


class PgrstError(Exception):
    """An error answered in PostgREST's JSON shape."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: str | None = None,
        hint: str | None = None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.hint = hint
        self.headers = list(headers)

    def body(self) -> bytes:
        return json.dumps(
            {"code": self.code, "details": self.details, "hint": self.hint, "message": self.message}
        ).encode()


def _bad(message: str, details: str | None = None) -> PgrstError:
    return PgrstError(400, "PGRST100", message, details)


def _unsupported(what: str) -> PgrstError:
    return PgrstError(501, "GW501", f"not supported by the test gateway: {what}")


@dataclass
class _Response:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str
    query: str
    status: int
    role: str | None


# ---------------------------------------------------------------------------------------
# Status mapping (PostgREST's table for SQLSTATEs raised by PostgreSQL)


def pg_error_status(sqlstate: str, message: str, authed: bool) -> int:
    exact = {
        "23503": 409,
        "23505": 409,
        "25006": 405,
        "53400": 500,
        "57P01": 503,
        "P0001": 400,
        "42883": 404,
        "42P01": 404,
        "42P17": 500,
    }
    if sqlstate == "21000":
        return 400 if message.endswith("requires a WHERE clause") else 500
    if sqlstate == "42501":
        return 403 if authed else 401
    if sqlstate in exact:
        return exact[sqlstate]
    by_class = {
        "08": 503,
        "09": 500,
        "0L": 403,
        "0P": 403,
        "25": 500,
        "28": 403,
        "2D": 500,
        "38": 500,
        "39": 500,
        "3B": 500,
        "40": 500,
        "53": 503,
        "54": 500,
        "55": 500,
        "57": 500,
        "58": 500,
        "F0": 500,
        "HV": 500,
        "P0": 500,
        "XX": 500,
    }
    if sqlstate[:2] in by_class:
        return by_class[sqlstate[:2]]
    if sqlstate.startswith("PT") and sqlstate[2:].isdigit():
        return int(sqlstate[2:])
    return 400


# ---------------------------------------------------------------------------------------
# Request syntax: names, select, filters, logic trees, order


_BARE_NAME = re.compile(r"[\w$][\w$ ]*")
_TYPE_NAME = re.compile(r"[A-Za-z_][\w ]*(\[\])?")
_OPERATORS = {
    "eq": "=",
    "neq": "<>",
    "gt": ">",
    "gte": ">=",
    "lt": "<",
    "lte": "<=",
    "like": "LIKE",
    "ilike": "ILIKE",
    "match": "~",
    "imatch": "~*",
    "cs": "@>",
    "cd": "<@",
    "ov": "&&",
    "isdistinct": "IS DISTINCT FROM",
}
_QUANTIFIABLE = {"eq", "neq", "gt", "gte", "lt", "lte", "like", "ilike", "match", "imatch"}
_IS_VALUES = {
    "null": "IS NULL",
    "not_null": "IS NOT NULL",
    "true": "IS TRUE",
    "false": "IS FALSE",
    "unknown": "IS UNKNOWN",
}
_TYPE_ALIASES = {
    "int": "int4",
    "integer": "int4",
    "bigint": "int8",
    "smallint": "int2",
    "real": "float4",
    "float": "float8",
    "double precision": "float8",
    "boolean": "bool",
    "decimal": "numeric",
    "character varying": "varchar",
}
_RESERVED_PARAMS = {"select", "order", "limit", "offset", "on_conflict", "columns"}


def _check_identifier(name: str) -> str:
    if not name or "%" in name or "\x00" in name:
        raise _unsupported(f"the identifier {name!r}")
    return name


class _Cursor:
    def __init__(self, text: str, what: str) -> None:
        self.text = text
        self.pos = 0
        self.what = what

    def eof(self) -> bool:
        return self.pos >= len(self.text)

    def rest(self) -> str:
        return self.text[self.pos :]

    def startswith(self, s: str) -> bool:
        return self.text.startswith(s, self.pos)

    def fail(self, expected: str) -> PgrstError:
        got = self.text[self.pos : self.pos + 10] or "end of input"
        return _bad(
            f'"failed to parse {self.what} ({self.text})" (line 1, column {self.pos + 1})',
            f"unexpected {got!r} expecting {expected}",
        )

    def name(self) -> str:
        if self.startswith('"'):
            self.pos += 1
            out: list[str] = []
            while True:
                if self.eof():
                    raise self.fail('closing "')
                ch = self.text[self.pos]
                if ch == "\\" and self.pos + 1 < len(self.text):
                    out.append(self.text[self.pos + 1])
                    self.pos += 2
                    continue
                self.pos += 1
                if ch == '"':
                    break
                out.append(ch)
            return _check_identifier("".join(out))
        m = _BARE_NAME.match(self.text, self.pos)
        if not m:
            raise self.fail("a column name")
        self.pos = m.end()
        return _check_identifier(m.group(0).strip())


def _split_top(text: str, what: str) -> list[str]:
    """Split on commas outside double quotes and parentheses."""
    parts: list[str] = []
    depth = 0
    quoted = False
    current: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if quoted and ch == "\\" and i + 1 < len(text):
            current.append(text[i : i + 2])
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in "({":
            depth += 1
        elif not quoted and ch in ")}":
            depth -= 1
            if depth < 0:
                raise _bad(f'"failed to parse {what} ({text})"', "unbalanced parentheses")
        elif not quoted and depth == 0 and ch == ",":
            parts.append("".join(current))
            current = []
            i += 1
            continue
        current.append(ch)
        i += 1
    if quoted or depth:
        raise _bad(f'"failed to parse {what} ({text})"', "unbalanced quotes or parentheses")
    parts.append("".join(current))
    return parts


def _unquote_value(value: str) -> str:
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


@dataclass(frozen=True)
class _SelectItem:
    column: str | None  # None: "*"
    alias: str | None = None
    cast: str | None = None


def _parse_select(text: str) -> list[_SelectItem]:
    items: list[_SelectItem] = []
    for raw in _split_top(text, "select"):
        part = raw.strip()
        if part == "*":
            items.append(_SelectItem(None))
            continue
        if not part:
            raise _bad(f'"failed to parse select parameter ({text})"', "empty column")
        if part.startswith("..."):
            raise _unsupported("spread of embedded resources in select")
        cur = _Cursor(part, "select parameter")
        first = cur.name()
        alias: str | None = None
        if cur.startswith(":") and not cur.startswith("::"):
            cur.pos += 1
            alias, first = first, cur.name()
        if cur.startswith("(") or cur.startswith("!"):
            raise _unsupported(f"embedded resource or aggregate in select ({part})")
        if cur.startswith("->"):
            raise _unsupported(f"JSON path in select ({part})")
        cast_to: str | None = None
        if cur.startswith("::"):
            cur.pos += 2
            m = _TYPE_NAME.match(cur.text, cur.pos)
            if not m:
                raise cur.fail("a type name")
            cur.pos = m.end()
            cast_to = m.group(0).strip()
        if not cur.eof():
            raise cur.fail("',' or end of input")
        items.append(_SelectItem(first, alias, cast_to))
    return items


def _parse_names(text: str, what: str) -> list[str]:
    names = []
    for part in _split_top(text, what):
        cur = _Cursor(part.strip(), what)
        names.append(cur.name())
        if not cur.eof():
            raise cur.fail("',' or end of input")
    return names


@dataclass(frozen=True)
class _Filter:
    column: str
    op: str
    value: str
    negate: bool = False
    quantifier: str | None = None  # "any" | "all"


@dataclass(frozen=True)
class _Logic:
    op: str  # "and" | "or"
    items: tuple[_Filter | _Logic, ...]
    negate: bool = False


_Node = _Filter | _Logic
_OP_RE = re.compile(r"(not\.)?([a-z_]+)(?:\((any|all)\))?\.", re.S)


def _parse_op_value(column: str, text: str, in_logic: bool) -> _Filter:
    m = _OP_RE.match(text)
    if not m:
        raise _bad(f'"failed to parse filter ({text})"', "expecting operator.value")
    negate, op, quantifier = bool(m.group(1)), m.group(2), m.group(3)
    value = text[m.end() :]
    if op in ("fts", "plfts", "phfts", "wfts"):
        raise _unsupported(f"full-text operator {op}")
    if op not in _OPERATORS and op not in ("is", "in"):
        raise _bad(f'"failed to parse filter ({text})"', f"unknown operator {op!r}")
    if quantifier and op not in _QUANTIFIABLE:
        raise _bad(f'"failed to parse filter ({text})"', f"{op} takes no (any)/(all)")
    if in_logic and op != "in":
        value = _unquote_value(value)
    return _Filter(column, op, value, negate, quantifier)


def _parse_filter(key: str, value: str) -> _Filter:
    cur = _Cursor(key, "filter")
    column = cur.name()
    if cur.startswith("->"):
        raise _unsupported(f"JSON path in filter ({key})")
    if not cur.eof():
        if cur.startswith("."):
            raise _unsupported(f"filters on embedded resources ({key})")
        raise cur.fail("end of column name")
    return _parse_op_value(column, value, in_logic=False)


_LOGIC_RE = re.compile(r"(not\.)?(and|or)\((.*)\)\Z", re.S)


def _parse_logic(op: str, negate: bool, text: str) -> _Logic:
    if not (text.startswith("(") and text.endswith(")")):
        raise _bad(f'"failed to parse logic tree ({text})"', "expecting (...)")
    items: list[_Node] = []
    for raw in _split_top(text[1:-1], "logic tree"):
        part = raw.strip()
        m = _LOGIC_RE.match(part)
        if m:
            items.append(_parse_logic(m.group(2), bool(m.group(1)), f"({m.group(3)})"))
            continue
        cur = _Cursor(part, "logic tree")
        column = cur.name()
        if cur.startswith("->"):
            raise _unsupported(f"JSON path in filter ({part})")
        if not cur.startswith("."):
            raise cur.fail("'.' after the column name")
        cur.pos += 1
        items.append(_parse_op_value(column, cur.rest(), in_logic=True))
    if not items:
        raise _bad(f'"failed to parse logic tree ({text})"', "empty")
    return _Logic(op, tuple(items), negate)


@dataclass(frozen=True)
class _Order:
    column: str
    desc: bool
    nulls: str | None  # "first" | "last"


def _parse_order(text: str) -> list[_Order]:
    out: list[_Order] = []
    for part in _split_top(text, "order"):
        cur = _Cursor(part.strip(), "order")
        column = cur.name()
        if cur.startswith("->"):
            raise _unsupported(f"JSON path in order ({part})")
        if cur.startswith("("):
            raise _unsupported(f"ordering on embedded resources ({part})")
        desc = False
        nulls: str | None = None
        rest = cur.rest()
        if rest:
            if not rest.startswith("."):
                raise cur.fail("'.asc', '.desc', '.nullsfirst' or '.nullslast'")
            for token in rest[1:].split("."):
                if token in ("asc", "desc"):
                    desc = token == "desc"
                elif token in ("nullsfirst", "nullslast"):
                    nulls = token[5:]
                else:
                    raise _bad(f'"failed to parse order ({text})"', f"unexpected {token!r}")
        out.append(_Order(column, desc, nulls))
    return out


def _parse_in_list(value: str) -> list[str]:
    if not (value.startswith("(") and value.endswith(")")):
        raise _bad(f'"failed to parse filter (in.{value})"', "expecting (value,...)")
    inner = value[1:-1]
    if inner == "":
        return []
    return [_unquote_value(v) for v in _split_top(inner, "in list")]


@dataclass
class _Params:
    select: list[_SelectItem] | None = None
    filters: list[_Node] = field(default_factory=list)
    order: list[_Order] = field(default_factory=list)
    limit: int | None = None
    offset: int | None = None
    on_conflict: list[str] | None = None
    columns: list[str] | None = None
    rpc_args: dict[str, str] = field(default_factory=dict)


def _int_param(name: str, value: str) -> int:
    if not re.fullmatch(r"\d+", value):
        raise _bad(
            f'"failed to parse {name} parameter ({value})"', "expecting a non-negative integer"
        )
    return int(value)


def _parse_params(pairs: Sequence[tuple[str, str]], arg_names: frozenset[str]) -> _Params:
    p = _Params()
    for key, value in pairs:
        if key in arg_names:
            p.rpc_args[key] = value
        elif key == "select":
            p.select = _parse_select(value)
        elif key == "order":
            p.order.extend(_parse_order(value))
        elif key == "limit":
            p.limit = _int_param("limit", value)
        elif key == "offset":
            p.offset = _int_param("offset", value)
        elif key == "on_conflict":
            p.on_conflict = _parse_names(value, "on_conflict")
        elif key == "columns":
            p.columns = _parse_names(value, "columns")
        elif key in ("and", "or", "not.and", "not.or"):
            negate = key.startswith("not.")
            p.filters.append(_parse_logic(key.removeprefix("not."), negate, value))
        elif re.fullmatch(r'[^".]+\.(select|order|limit|offset|and|or|not\.and|not\.or)', key):
            raise _unsupported(f"parameters on embedded resources ({key})")
        else:
            p.filters.append(_parse_filter(key, value))
    return p


# ---------------------------------------------------------------------------------------
# SQL building (identifiers through psycopg.sql, values as parameters)


def _col(qual: str, name: str) -> sql.Composable:
    return sql.Identifier(qual, name)


def _type_ident(name: str) -> sql.Composable:
    array = name.endswith("[]")
    base = name[:-2] if array else name
    base = _TYPE_ALIASES.get(base.lower().strip(), base.strip())
    ident = sql.Identifier(_check_identifier(base))
    return sql.SQL("{}[]").format(ident) if array else ident


def _select_list(items: list[_SelectItem] | None, qual: str) -> sql.Composable:
    if not items:
        return sql.SQL("{}.*").format(sql.Identifier(qual))
    parts: list[sql.Composable] = []
    for it in items:
        if it.column is None:
            parts.append(sql.SQL("{}.*").format(sql.Identifier(qual)))
            continue
        expr: sql.Composable = _col(qual, it.column)
        if it.cast:
            expr = sql.SQL("{}::{}").format(expr, _type_ident(it.cast))
        parts.append(sql.SQL("{} AS {}").format(expr, sql.Identifier(it.alias or it.column)))
    return sql.SQL(", ").join(parts)


def _filter_sql(f: _Filter, qual: str, params: list[Any]) -> sql.Composable:
    col = _col(qual, f.column)
    expr: sql.Composable
    if f.op == "is":
        kw = _IS_VALUES.get(f.value.lower())
        if kw is None:
            raise _bad(
                f'"failed to parse filter (is.{f.value})"',
                "expecting null, not_null, true, false or unknown",
            )
        expr = sql.SQL("{} {}").format(col, sql.SQL(kw))
    elif f.op == "in":
        values = _parse_in_list(f.value)
        if not values:
            expr = sql.SQL("false")
        else:
            params.extend(values)
            expr = sql.SQL("{} IN ({})").format(
                col, sql.SQL(", ").join(sql.Placeholder() for _ in values)
            )
    else:
        value = f.value
        if f.op in ("like", "ilike"):
            value = value.replace("*", "%")
        params.append(value)
        op = sql.SQL(_OPERATORS[f.op])
        if f.quantifier:
            expr = sql.SQL("{} {} {}({})").format(
                col, op, sql.SQL(f.quantifier.upper()), sql.Placeholder()
            )
        else:
            expr = sql.SQL("{} {} {}").format(col, op, sql.Placeholder())
    return sql.SQL("NOT ({})").format(expr) if f.negate else expr


def _node_sql(node: _Node, qual: str, params: list[Any]) -> sql.Composable:
    if isinstance(node, _Filter):
        return _filter_sql(node, qual, params)
    joiner = sql.SQL(" OR ") if node.op == "or" else sql.SQL(" AND ")
    inner = sql.SQL("({})").format(joiner.join(_node_sql(n, qual, params) for n in node.items))
    return sql.SQL("NOT {}").format(inner) if node.negate else inner


def _where(nodes: list[_Node], qual: str, params: list[Any]) -> sql.Composable:
    if not nodes:
        return sql.SQL("")
    return sql.SQL(" WHERE ") + sql.SQL(" AND ").join(_node_sql(n, qual, params) for n in nodes)


def _order_by(order: list[_Order], qual: str) -> sql.Composable:
    if not order:
        return sql.SQL("")
    parts = []
    for o in order:
        s = sql.SQL("{} {}").format(_col(qual, o.column), sql.SQL("DESC" if o.desc else "ASC"))
        if o.nulls:
            s = sql.SQL("{} {}").format(s, sql.SQL(f"NULLS {o.nulls.upper()}"))
        parts.append(s)
    return sql.SQL(" ORDER BY ") + sql.SQL(", ").join(parts)


# ---------------------------------------------------------------------------------------
# Schema "cache" (read from the catalog per request, outside the request transaction)


@dataclass(frozen=True)
class _Table:
    schema: str
    name: str
    columns: tuple[str, ...]
    primary_key: tuple[str, ...]

    @property
    def ident(self) -> sql.Composable:
        return sql.Identifier(self.schema, self.name)


@dataclass(frozen=True)
class _Function:
    schema: str
    name: str
    arg_names: tuple[str, ...]  # input arguments, in order ("" when unnamed)
    arg_types: tuple[tuple[str, str], ...]  # (schema, type name) per input argument
    n_defaults: int
    returns_set: bool
    shape: str  # "composite" | "scalar" | "void" | "record"
    volatile: str  # "i" | "s" | "v"

    @property
    def required(self) -> frozenset[str]:
        n = len(self.arg_names) - self.n_defaults
        return frozenset(self.arg_names[:n])

    @property
    def single_json_arg(self) -> bool:
        return (
            len(self.arg_names) == 1
            and self.arg_names[0] == ""
            and self.arg_types[0] in (("pg_catalog", "json"), ("pg_catalog", "jsonb"))
        )


_TABLE_SQL = """
SELECT array(SELECT a.attname::text FROM pg_attribute a
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum),
       array(SELECT a.attname::text FROM pg_index i
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
             WHERE i.indrelid = c.oid AND i.indisprimary
             ORDER BY array_position(i.indkey::int2[], a.attnum))
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'v', 'm', 'f', 'p')
"""

_TABLE_NAMES_SQL = """
SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relkind IN ('r', 'v', 'm', 'f', 'p')
"""

_FUNCTION_SQL = """
SELECT coalesce(p.proargnames, '{}')::text[], coalesce(p.proargmodes::text[], '{}'),
       p.proargtypes::oid[], p.pronargdefaults, p.proretset, p.provolatile::text,
       rt.typtype::text, rt.oid = 'pg_catalog.void'::regtype, rt.oid = 'pg_catalog.record'::regtype,
       p.prokind::text
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_type rt ON rt.oid = p.prorettype
WHERE n.nspname = %s AND p.proname = %s
"""

_TYPES_SQL = """
SELECT t.oid, n.nspname::text, t.typname::text FROM pg_type t
JOIN pg_namespace n ON n.oid = t.typnamespace WHERE t.oid = ANY (%s)
"""


def _load_table(conn: psycopg.Connection[Any], schema: str, name: str) -> _Table:
    row = conn.execute(_TABLE_SQL, (schema, name)).fetchone()
    if row is None:
        names = [r[0] for r in conn.execute(_TABLE_NAMES_SQL, (schema,))]
        close = difflib.get_close_matches(name, names, n=1)
        raise PgrstError(
            404,
            "PGRST205",
            f"Could not find the table '{schema}.{name}' in the schema cache",
            None,
            f"Perhaps you meant the table '{schema}.{close[0]}'" if close else None,
        )
    return _Table(schema, name, tuple(row[0]), tuple(row[1]))


def _load_functions(conn: psycopg.Connection[Any], schema: str, name: str) -> list[_Function]:
    rows = conn.execute(_FUNCTION_SQL, (schema, name)).fetchall()
    out: list[_Function] = []
    type_oids = {oid for r in rows for oid in r[2]}
    types = {r[0]: (r[1], r[2]) for r in conn.execute(_TYPES_SQL, (sorted(type_oids),)).fetchall()}
    for names, modes, in_types, n_defaults, retset, volatile, typtype, void, record, kind in rows:
        if kind != "f":
            continue
        all_count = len(modes) if modes else len(in_types)
        all_names = list(names) + [""] * (all_count - len(names))
        if modes:
            in_names = [all_names[i] for i, m in enumerate(modes) if m in ("i", "b", "v")]
            has_out = any(m in ("o", "b", "t") for m in modes)
            if "v" in modes:
                continue  # variadic: not supported, never matched
        else:
            in_names, has_out = all_names, False
        if void and not retset:
            shape = "void"
        elif typtype == "c" or (record and has_out):
            shape = "composite"
        elif record:
            shape = "record"
        else:
            shape = "scalar"
        out.append(
            _Function(
                schema,
                name,
                tuple(in_names),
                tuple(types[o] for o in in_types),
                int(n_defaults),
                bool(retset),
                shape,
                volatile,
            )
        )
    return out


# ---------------------------------------------------------------------------------------
# Connection pool


class _Pool:
    def __init__(self, dsn: str, size: int) -> None:
        self._dsn = dsn
        self._idle: list[psycopg.Connection[Any]] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(size)
        self._closed = False

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        if not self._slots.acquire(timeout=60):
            raise PgrstError(
                504, "PGRST003", "Timed out acquiring connection from connection pool."
            )
        conn: psycopg.Connection[Any] | None = None
        try:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                try:
                    conn = psycopg.connect(
                        self._dsn, autocommit=True, application_name="rbmigrate-test-gateway"
                    )
                except psycopg.Error as exc:
                    raise PgrstError(
                        503,
                        "PGRST000",
                        "Could not connect with the database.",
                        str(exc).strip() or None,
                    ) from None
            yield conn
        finally:
            if conn is not None:
                self._release(conn)
            self._slots.release()

    def _release(self, conn: psycopg.Connection[Any]) -> None:
        if conn.closed or conn.broken:
            conn.close()
            return
        if conn.info.transaction_status != TransactionStatus.IDLE:
            try:
                conn.execute("ROLLBACK")
            except psycopg.Error:
                conn.close()
                return
        with self._lock:
            if not self._closed:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


# ---------------------------------------------------------------------------------------
# Request context


@dataclass
class _Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    role: str = ""
    claims: dict[str, Any] = field(default_factory=dict)
    authed: bool = False
    schema: str = "public"
    prefer: dict[str, str] = field(default_factory=dict)
    single: bool = False

    def json_body(self) -> Any:
        if not self.body.strip():
            return None
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise PgrstError(400, "PGRST102", "Empty or invalid json", str(exc)) from None


def _parse_prefer(value: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for token in value.split(","):
        key, _, val = token.strip().partition("=")
        if key:
            out[key.strip().lower()] = val.strip()
    return out


def _content_range(lower: int, upper: int, total: int | None) -> str:
    rng = f"{lower}-{upper}" if total != 0 and lower <= upper else "*"
    return f"{rng}/{'*' if total is None else total}"


# ---------------------------------------------------------------------------------------
# The gateway


class Gateway:
    """PostgREST's HTTP layer for tests; see the module docstring for what it covers."""

    def __init__(
        self,
        dsn: str,
        jwt_secret: str = TEST_JWT_SECRET,
        schema: str | Sequence[str] = "public",
        *,
        max_rows: int | None = 1000,
        anon_role: str = "anon",
        extra_search_path: Sequence[str] = ("public", "extensions"),
        safeupdate: bool = True,
        timezone: str | None = None,
        pool_size: int = 8,
        host: str = "127.0.0.1",
        port: int = 0,
        jwt_leeway: int = 30,
    ) -> None:
        self.dsn = dsn
        self.jwt_secret = jwt_secret
        self.schemas = (schema,) if isinstance(schema, str) else tuple(schema)
        if not self.schemas:
            raise ValueError("at least one schema")
        self.max_rows = max_rows
        self.anon_role = anon_role
        self.extra_search_path = tuple(extra_search_path)
        self.safeupdate = safeupdate
        self.timezone = timezone
        self.jwt_leeway = jwt_leeway
        self._host = host
        self._port = port
        self._pool = _Pool(dsn, pool_size)
        self._lock = threading.Lock()
        self._faults: list[tuple[str, int, bytes | None]] = []
        self._log: list[LoggedRequest] = []
        self.errors: list[str] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> Gateway:
        if self._server is not None:
            return self
        self._server = _Server((self._host, self._port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="test-gateway",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        self._pool.close()

    def __enter__(self) -> Gateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the gateway is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The project URL (what ``supabase.create_client`` takes)."""
        return f"http://{self._host}:{self.port}"

    @property
    def rest_url(self) -> str:
        return f"{self.url}/rest/v1"

    # -- test hooks -----------------------------------------------------------------------

    def fail_next(self, n: int = 1, status: int = 503, body: bytes | None = None) -> None:
        """Answer the next n requests with ``status`` without touching the database."""
        with self._lock:
            self._faults.extend(("fail", status, body) for _ in range(n))

    def drop_next(self, n: int = 1) -> None:
        """Close the next n connections after reading the request, sending nothing."""
        with self._lock:
            self._faults.extend(("drop", 0, None) for _ in range(n))

    def _take_fault(self) -> tuple[str, int, bytes | None] | None:
        with self._lock:
            return self._faults.pop(0) if self._faults else None

    @property
    def log(self) -> list[LoggedRequest]:
        with self._lock:
            return list(self._log)

    @property
    def requests(self) -> list[tuple[str, str]]:
        """(method, path) of every request received, in order (faults included)."""
        return [(r.method, r.path) for r in self.log]

    def reset(self) -> None:
        """Forget the log, pending faults and recorded errors."""
        with self._lock:
            self._log.clear()
            self._faults.clear()
            self.errors.clear()

    def _record(self, entry: LoggedRequest) -> None:
        with self._lock:
            self._log.append(entry)

    # -- request handling ---------------------------------------------------------------

    def handle(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[_Response, str | None]:
        """Serve one request; returns the response and the role it ran as."""
        split = urlsplit(target)
        req = _Request(
            method.upper(),
            split.path,
            split.query,
            {k.lower(): v for k, v in headers.items()},
            body,
        )
        try:
            return self._dispatch(req), req.role or None
        except PgrstError as exc:
            hdrs = [("Content-Type", _JSON), *exc.headers]
            return _Response(exc.status, hdrs, exc.body()), req.role or None
        except Exception:
            tb = traceback.format_exc()
            with self._lock:
                self.errors.append(tb)
            err = PgrstError(500, "GW500", "test gateway internal error", tb.splitlines()[-1])
            return _Response(500, [("Content-Type", _JSON)], err.body()), req.role or None

    def _dispatch(self, req: _Request) -> _Response:
        if not req.path.startswith("/rest/v1/"):
            raise PgrstError(404, "PGRST125", "Invalid path specified in request URL")
        segments = [unquote(s) for s in req.path[len("/rest/v1/") :].split("/")]
        if segments == [""]:
            raise _unsupported("the OpenAPI description (GET /rest/v1/)")
        self._authenticate(req)
        self._choose_schema(req)
        req.prefer = _parse_prefer(req.headers.get("prefer", ""))
        for unsupported in ("params", "tx", "timezone"):
            if unsupported in req.prefer:
                raise _unsupported(f"Prefer: {unsupported}=")
        accept = req.headers.get("accept", "application/json").lower()
        if any(m in accept for m in ("text/csv", "nulls=stripped", "pgrst.plan", "geo+json")):
            raise _unsupported(f"Accept: {accept}")
        if not any(m in accept for m in ("json", "*/*")):
            raise PgrstError(406, "PGRST107", f"None of these media types are available: {accept}")
        req.single = _OBJECT_MEDIA in accept
        pairs = parse_qsl(req.query, keep_blank_values=True)
        if len(segments) == 1 and segments[0]:
            name = _check_identifier(segments[0])
            if req.method in ("GET", "HEAD"):
                return self._read(req, name, pairs)
            if req.method == "POST":
                return self._insert(req, name, pairs)
            if req.method == "PATCH":
                return self._update(req, name, pairs)
            if req.method == "DELETE":
                return self._delete(req, name, pairs)
            if req.method == "PUT":
                raise _unsupported("PUT")
            raise PgrstError(405, "PGRST117", f"Unsupported HTTP method: {req.method}")
        if len(segments) == 2 and segments[0] == "rpc" and segments[1]:
            if req.method not in ("GET", "HEAD", "POST"):
                raise PgrstError(405, "PGRST101", "Only GET, HEAD and POST are allowed for RPC")
            return self._rpc(req, _check_identifier(segments[1]), pairs)
        raise PgrstError(404, "PGRST125", "Invalid path specified in request URL")

    def _authenticate(self, req: _Request) -> None:
        token: str | None = None
        auth = req.headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            token = auth[7:].strip()
        elif req.headers.get("apikey"):
            token = req.headers["apikey"].strip()
        if not token:
            req.role, req.claims = self.anon_role, {"role": self.anon_role}
            req.authed = False
            return

        def fail(message: str) -> PgrstError:
            desc = message.replace('"', "'")
            return PgrstError(
                401,
                "PGRST301",
                message,
                headers=[
                    (
                        "WWW-Authenticate",
                        f'Bearer error="invalid_token", error_description="{desc}"',
                    )
                ],
            )

        parts = token.split(".")
        if len(parts) != 3:
            raise fail(f"Expected 3 parts in JWT; got {len(parts)}")
        try:
            claims = jwt.decode(
                token,
                self.jwt_secret,
                algorithms=["HS256"],
                leeway=self.jwt_leeway,
                options={"verify_aud": False},
            )
        except jwt.ExpiredSignatureError:
            raise fail("JWT expired") from None
        except jwt.InvalidSignatureError:
            raise fail("JWSError JWSInvalidSignature") from None
        except jwt.InvalidAlgorithmError:
            raise fail("JWSError JWSInvalidAlgorithm") from None
        except jwt.PyJWTError as exc:
            raise fail(f"JWSError {type(exc).__name__}: {exc}") from None
        role = claims.get("role", self.anon_role)
        if not isinstance(role, str) or not role:
            raise fail("JWT role claim is not a string")
        req.role, req.claims = role, claims
        req.authed = role != self.anon_role

    def _choose_schema(self, req: _Request) -> None:
        header = "accept-profile" if req.method in ("GET", "HEAD") else "content-profile"
        wanted = req.headers.get(header)
        if wanted is None:
            req.schema = self.schemas[0]
        elif wanted in self.schemas:
            req.schema = wanted
        else:
            raise PgrstError(
                406,
                "PGRST106",
                f"The schema must be one of the following: {', '.join(self.schemas)}",
            )

    # -- transaction ----------------------------------------------------------------------

    @contextmanager
    def _transaction(
        self, conn: psycopg.Connection[Any], req: _Request, read_only: bool
    ) -> Iterator[None]:
        conn.execute(
            "BEGIN ISOLATION LEVEL READ COMMITTED READ ONLY"
            if read_only
            else "BEGIN ISOLATION LEVEL READ COMMITTED READ WRITE"
        )
        done = False
        try:
            search_path = ", ".join(
                sql.Identifier(s).as_string(conn)
                for s in dict.fromkeys((req.schema, *self.extra_search_path))
            )
            settings: list[tuple[str, str]] = [
                ("role", req.role),
                ("request.jwt.claims", json.dumps(req.claims)),
                ("request.jwt.claim.role", req.role),
                ("request.method", req.method),
                ("request.path", req.path[len("/rest/v1") :]),
                ("request.headers", json.dumps(req.headers)),
                ("search_path", search_path),
            ]
            if self.timezone:
                settings.append(("timezone", self.timezone))
            query = sql.SQL("SELECT {}").format(
                sql.SQL(", ").join(
                    sql.SQL("set_config({}, {}, true)").format(sql.Placeholder(), sql.Placeholder())
                    for _ in settings
                )
            )
            conn.execute(query, [v for pair in settings for v in pair])
            yield
            done = True
        finally:
            if done:
                conn.execute("COMMIT")
            elif not conn.closed and not conn.broken:
                with suppress(psycopg.Error):
                    conn.execute("ROLLBACK")

    def _run(
        self, req: _Request, read_only: bool, work: Callable[[_Conn], Callable[[_Conn], _T]]
    ) -> _T:
        """Run ``work(conn)`` (catalog look-ups, outside the request's transaction), then the
        statement it returns inside the request's transaction."""
        with self._pool.connection() as conn:
            try:
                plan = work(conn)
                with self._transaction(conn, req, read_only):
                    return plan(conn)
            except psycopg.Error as exc:
                raise self._pg_error(exc, req) from None

    def _pg_error(self, exc: psycopg.Error, req: _Request) -> PgrstError:
        diag = exc.diag
        code = diag.sqlstate
        if code is None:
            return PgrstError(
                503, "PGRST001", "Database client error. Retrying the connection.", str(exc)
            )
        message = diag.message_primary or str(exc)
        status = pg_error_status(code, message, req.authed)
        headers = [("WWW-Authenticate", "Bearer")] if status == 401 else []
        return PgrstError(
            status, code, message, diag.message_detail, diag.message_hint, headers=headers
        )

    # -- ranges -----------------------------------------------------------------------------

    def _range(self, req: _Request, p: _Params, cap: bool) -> tuple[int, int | None]:
        """(offset, limit) after intersecting the Range header, limit/offset and max_rows."""
        lower, upper = 0, None
        header = req.headers.get("range") if req.method in ("GET", "HEAD") else None
        if header:
            m = re.fullmatch(r"\s*(?:items=)?(\d+)-(\d*)\s*", header)
            if not m:
                raise _bad(f'"failed to parse Range header ({header})"')
            lower = int(m.group(1))
            upper = int(m.group(2)) if m.group(2) else None
            if upper is not None and upper < lower:
                raise PgrstError(416, "PGRST103", "Requested range not satisfiable")
        if p.offset is not None or p.limit is not None:
            p_lower = p.offset or 0
            p_upper = p_lower + p.limit - 1 if p.limit is not None else None
            lower = max(lower, p_lower)
            if p_upper is not None:
                upper = p_upper if upper is None else min(upper, p_upper)
        if cap and self.max_rows is not None:
            cap_upper = lower + self.max_rows - 1
            upper = cap_upper if upper is None else min(upper, cap_upper)
        limit = None if upper is None else max(upper - lower + 1, 0)
        return lower, limit

    def _read_response(
        self,
        req: _Request,
        offset: int,
        counted: bool,
        row: tuple[Any, ...] | None,
        extra_headers: Sequence[tuple[str, str]] = (),
    ) -> _Response:
        assert row is not None
        total = int(row[0]) if counted and row[0] is not None else None
        n = int(row[1])
        body = str(row[2])
        lower, upper = offset, offset + n - 1
        if total is not None and lower > total:
            raise PgrstError(
                416,
                "PGRST103",
                "Requested range not satisfiable",
                f"An offset of {lower} was requested, but there are only {total} rows.",
            )
        status = 206 if total is not None and (1 + upper - lower) < total else 200
        headers = [
            ("Content-Type", _JSON),
            ("Content-Range", _content_range(lower, upper, total)),
            *extra_headers,
        ]
        if counted:
            headers.append(("Preference-Applied", f"count={req.prefer.get('count')}"))
        if req.single:
            body = self._single(n, body)
        return _Response(status, headers, body.encode())

    @staticmethod
    def _single(n: int, body: str) -> str:
        if n != 1:
            raise PgrstError(
                406,
                "PGRST116",
                "JSON object requested, multiple (or no) rows returned",
                f"The result contains {n} rows",
            )
        return body.strip()[1:-1].strip()

    # -- tables ---------------------------------------------------------------------------

    def _read(self, req: _Request, name: str, pairs: list[tuple[str, str]]) -> _Response:
        p = _parse_params(pairs, frozenset())
        counted = req.prefer.get("count") in ("exact", "planned", "estimated")
        offset, limit = self._range(req, p, cap=True)

        def work(conn: psycopg.Connection[Any]) -> Any:
            table = _load_table(conn, req.schema, name)
            self._check_columns(table, [i.column for i in p.select or [] if i.column])
            params: list[Any] = []
            where = _where(p.filters, name, params)
            total: sql.Composable = sql.SQL("NULL::bigint")
            count_params: list[Any] = []
            if counted:
                total = sql.SQL("(SELECT count(*) FROM {} AS {}{})").format(
                    table.ident, sql.Identifier(name), _where(p.filters, name, count_params)
                )
            query = sql.SQL(
                "SELECT {total}, count(*), coalesce(json_agg(pgrst_page), '[]')::text FROM "
                "(SELECT {cols} FROM {tbl} AS {alias}{where}{order} LIMIT {lim} OFFSET {off}) "
                "AS pgrst_page"
            ).format(
                total=total,
                cols=_select_list(p.select, name),
                tbl=table.ident,
                alias=sql.Identifier(name),
                where=where,
                order=_order_by(p.order, name),
                lim=sql.Placeholder(),
                off=sql.Placeholder(),
            )
            args = [*count_params, *params, limit, offset]
            return lambda c: c.execute(query, args).fetchone()

        row = self._run(req, True, work)
        return self._read_response(req, offset, counted, row)

    @staticmethod
    def _check_columns(table: _Table, names: Sequence[str]) -> None:
        for n in names:
            if n not in table.columns:
                raise PgrstError(
                    400, "42703", f"column {table.name}.{n} does not exist", None, None
                )

    @staticmethod
    def _check_payload_columns(table: _Table, names: Sequence[str]) -> None:
        for n in names:
            if n not in table.columns:
                raise PgrstError(
                    400,
                    "PGRST204",
                    f"Could not find the '{n}' column of '{table.name}' in the schema cache",
                )

    def _payload_columns(self, p: _Params, rows: list[dict[str, Any]]) -> list[str]:
        if p.columns is not None:
            return list(dict.fromkeys(p.columns))
        if not rows:
            return []
        keys = list(rows[0])
        first = set(keys)
        if any(set(r) != first for r in rows[1:]):
            raise PgrstError(400, "PGRST102", "All object keys must match")
        for k in keys:
            _check_identifier(k)
        return keys

    def _returning(self, req: _Request, p: _Params, table: _Table) -> tuple[bool, sql.Composable]:
        representation = req.prefer.get("return", "minimal") == "representation"
        if representation:
            self._check_columns(table, [i.column for i in p.select or [] if i.column])
            return True, _select_list(p.select, table.name)
        return False, sql.SQL("1")

    def _mutation_response(
        self, req: _Request, status_rep: int, status_min: int, n: int, body: str, kind: str
    ) -> _Response:
        representation = req.prefer.get("return", "minimal") == "representation"
        counted = req.prefer.get("count") in ("exact", "planned", "estimated")
        if kind == "insert":
            crange = _content_range(1, 0, n if counted else None)
        else:
            crange = _content_range(0, n - 1, n if counted else None)
        applied = [
            f"{k}={req.prefer[k]}"
            for k in ("return", "count", "resolution", "missing", "handling", "max-affected")
            if k in req.prefer
        ]
        headers = [("Content-Range", crange)]
        if applied:
            headers.append(("Preference-Applied", ", ".join(applied)))
        if not representation:
            return _Response(status_min, headers)
        return _Response(status_rep, [("Content-Type", _JSON), *headers], body.encode())

    def _finish_mutation(self, req: _Request, n: int, body: str) -> str:
        """Checks that must roll the transaction back when they fail."""
        if req.prefer.get("handling") == "strict" and "max-affected" in req.prefer:
            limit = _int_param("max-affected", req.prefer["max-affected"])
            if n > limit:
                raise PgrstError(
                    400,
                    "PGRST124",
                    "Query result exceeds max-affected preference constraint",
                    f"The query affects {n} rows",
                )
        if req.single and req.prefer.get("return") == "representation":
            return self._single(n, body)
        return body

    def _insert(self, req: _Request, name: str, pairs: list[tuple[str, str]]) -> _Response:
        p = _parse_params(pairs, frozenset())
        if p.filters or p.order or p.limit is not None or p.offset is not None:
            raise _bad("filters, order, limit and offset are not allowed on an insert")
        payload = req.json_body()
        if payload is None:
            payload = []
        is_list = isinstance(payload, list)
        rows = payload if is_list else [payload]
        if not all(isinstance(r, dict) for r in rows):
            raise PgrstError(400, "PGRST102", "Empty or invalid json", "expected objects")
        raw = req.body if is_list and req.body.strip() else b"[" + req.body + b"]"
        if not rows:
            raw = b"[]"
        resolution = req.prefer.get("resolution")
        if resolution not in (None, "merge-duplicates", "ignore-duplicates"):
            raise _bad(f"unknown resolution {resolution!r}")
        missing_default = req.prefer.get("missing") == "default"

        def work(conn: psycopg.Connection[Any]) -> Any:
            table = _load_table(conn, req.schema, name)
            cols = self._payload_columns(p, rows)
            self._check_payload_columns(table, cols)
            rep, returning = self._returning(req, p, table)
            conflict: sql.Composable = sql.SQL("")
            if resolution is not None:
                target = p.on_conflict or list(table.primary_key)
                target_sql = (
                    sql.SQL(" ({})").format(sql.SQL(", ").join(map(sql.Identifier, target)))
                    if target
                    else sql.SQL("")
                )
                if resolution == "ignore-duplicates":
                    conflict = sql.SQL(" ON CONFLICT{} DO NOTHING").format(target_sql)
                else:
                    conflict = sql.SQL(" ON CONFLICT{} DO UPDATE SET {}").format(
                        target_sql,
                        sql.SQL(", ").join(
                            sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in cols
                        ),
                    )
            body_expr = (
                sql.SQL("coalesce(json_agg(pgrst_rows), '[]')::text") if rep else sql.SQL("'[]'")
            )
            # groups of rows inserted together: (columns, 1-based ordinals or None for all)
            groups: list[tuple[list[str], list[int] | None]] = [(cols, None)]
            if missing_default:
                by_keys: dict[tuple[str, ...], list[int]] = {}
                for i, r in enumerate(rows, start=1):
                    by_keys.setdefault(tuple(c for c in cols if c in r), []).append(i)
                groups = [(list(k), v) for k, v in by_keys.items()]
            statements: list[tuple[sql.Composed, list[Any]]] = []
            for gcols, ordinals in groups:
                if not gcols:
                    n_rows = len(ordinals) if ordinals is not None else len(rows)
                    one = sql.SQL(
                        "WITH pgrst_rows AS (INSERT INTO {tbl} AS {alias} DEFAULT VALUES{conflict} "
                        "RETURNING {ret}) SELECT count(*), {body} FROM pgrst_rows"
                    ).format(
                        tbl=table.ident,
                        alias=sql.Identifier(name),
                        conflict=conflict,
                        ret=returning,
                        body=body_expr,
                    )
                    statements.extend((one, []) for _ in range(n_rows))
                    continue
                source: sql.Composable = sql.Placeholder()
                args: list[Any] = [raw.decode()]
                if ordinals is not None:
                    source = sql.SQL(
                        "(SELECT json_agg(e.value ORDER BY e.ord) FROM "
                        "json_array_elements({}::json) WITH ORDINALITY AS e(value, ord) "
                        "WHERE e.ord = ANY({}))"
                    ).format(sql.Placeholder(), sql.Placeholder())
                    args.append(ordinals)
                ident_cols = sql.SQL(", ").join(map(sql.Identifier, gcols))
                stmt = sql.SQL(
                    "WITH pgrst_rows AS (INSERT INTO {tbl} AS {alias} ({cols}) "
                    "SELECT {body_cols} FROM json_populate_recordset(NULL::{tbl}, {source}::json) "
                    "AS pgrst_body{conflict} RETURNING {ret}) "
                    "SELECT count(*), {body} FROM pgrst_rows"
                ).format(
                    tbl=table.ident,
                    alias=sql.Identifier(name),
                    cols=ident_cols,
                    body_cols=sql.SQL(", ").join(sql.Identifier("pgrst_body", c) for c in gcols),
                    source=source,
                    conflict=conflict,
                    ret=returning,
                    body=body_expr,
                )
                statements.append((stmt, args))
            if not rows:
                statements = []

            def execute(c: psycopg.Connection[Any]) -> tuple[int, str]:
                n, parts = 0, []
                for stmt, args in statements:
                    row = c.execute(stmt, args).fetchone()
                    assert row is not None
                    n += int(row[0])
                    if str(row[1]).strip() != "[]":
                        parts.append(str(row[1]).strip()[1:-1])
                body = "[" + ", ".join(parts) + "]"
                return n, self._finish_mutation(req, n, body)

            return execute

        n, body = self._run(req, False, work)
        return self._mutation_response(req, 201, 201, n, body, "insert")

    def _safeupdate(self, verb: str, p: _Params) -> None:
        if self.safeupdate and not p.filters:
            raise PgrstError(400, "21000", f"{verb} requires a WHERE clause")

    def _update(self, req: _Request, name: str, pairs: list[tuple[str, str]]) -> _Response:
        p = _parse_params(pairs, frozenset())
        if p.order or p.limit is not None or p.offset is not None:
            raise _unsupported("PATCH with order/limit/offset")
        payload = req.json_body()
        if not isinstance(payload, dict):
            raise PgrstError(400, "PGRST102", "Empty or invalid json", "expected a JSON object")
        self._safeupdate("UPDATE", p)

        def work(conn: psycopg.Connection[Any]) -> Any:
            table = _load_table(conn, req.schema, name)
            cols = self._payload_columns(p, [payload])
            self._check_payload_columns(table, cols)
            rep, returning = self._returning(req, p, table)
            if not cols:
                return lambda c: (0, "[]")
            params: list[Any] = [req.body.decode()]
            where = _where(p.filters, name, params)
            stmt = sql.SQL(
                "WITH pgrst_rows AS (UPDATE {tbl} AS {alias} SET {sets} "
                "FROM json_populate_record(NULL::{tbl}, {body}::json) AS pgrst_body{where} "
                "RETURNING {ret}) SELECT count(*), {agg} FROM pgrst_rows"
            ).format(
                tbl=table.ident,
                alias=sql.Identifier(name),
                sets=sql.SQL(", ").join(
                    sql.SQL("{} = {}").format(sql.Identifier(c), sql.Identifier("pgrst_body", c))
                    for c in cols
                ),
                body=sql.Placeholder(),
                where=where,
                ret=returning,
                agg=sql.SQL("coalesce(json_agg(pgrst_rows), '[]')::text")
                if rep
                else sql.SQL("'[]'"),
            )

            def execute(c: psycopg.Connection[Any]) -> tuple[int, str]:
                row = c.execute(stmt, params).fetchone()
                assert row is not None
                return int(row[0]), self._finish_mutation(req, int(row[0]), str(row[1]))

            return execute

        n, body = self._run(req, False, work)
        return self._mutation_response(req, 200, 204, n, body, "update")

    def _delete(self, req: _Request, name: str, pairs: list[tuple[str, str]]) -> _Response:
        p = _parse_params(pairs, frozenset())
        if p.order or p.limit is not None or p.offset is not None:
            raise _unsupported("DELETE with order/limit/offset")
        self._safeupdate("DELETE", p)

        def work(conn: psycopg.Connection[Any]) -> Any:
            table = _load_table(conn, req.schema, name)
            rep, returning = self._returning(req, p, table)
            params: list[Any] = []
            where = _where(p.filters, name, params)
            stmt = sql.SQL(
                "WITH pgrst_rows AS (DELETE FROM {tbl} AS {alias}{where} RETURNING {ret}) "
                "SELECT count(*), {agg} FROM pgrst_rows"
            ).format(
                tbl=table.ident,
                alias=sql.Identifier(name),
                where=where,
                ret=returning,
                agg=sql.SQL("coalesce(json_agg(pgrst_rows), '[]')::text")
                if rep
                else sql.SQL("'[]'"),
            )

            def execute(c: psycopg.Connection[Any]) -> tuple[int, str]:
                row = c.execute(stmt, params).fetchone()
                assert row is not None
                return int(row[0]), self._finish_mutation(req, int(row[0]), str(row[1]))

            return execute

        n, body = self._run(req, False, work)
        return self._mutation_response(req, 200, 204, n, body, "delete")

    # -- rpc ------------------------------------------------------------------------------

    def _rpc(self, req: _Request, name: str, pairs: list[tuple[str, str]]) -> _Response:
        counted = req.prefer.get("count") in ("exact", "planned", "estimated")
        if req.method == "POST":
            payload = req.json_body()
            if payload is None:
                payload, raw = {}, "{}"
            else:
                raw = req.body.decode()
        else:
            payload, raw = None, ""

        def work(conn: psycopg.Connection[Any]) -> Any:
            nonlocal payload, raw
            candidates = _load_functions(conn, req.schema, name)
            arg_names = frozenset(n for f in candidates for n in f.arg_names if n)
            p = _parse_params(pairs, arg_names if req.method != "POST" else frozenset())
            if req.method != "POST":
                payload = dict(p.rpc_args)
                raw = json.dumps(payload)
            fn = self._choose_function(req.schema, name, candidates, payload)
            if fn.shape == "record":
                raise _unsupported(f"function {name} returns an untyped record")
            read_only = req.method != "POST" or fn.volatile in ("s", "i")
            query, args, offset = self._rpc_statement(req, fn, p, payload, raw, counted)
            return read_only, fn, offset, lambda c: c.execute(query, args).fetchone()

        # the transaction's access mode depends on the function: look it up first
        with self._pool.connection() as conn:
            try:
                read_only, fn, offset, plan = work(conn)
                with self._transaction(conn, req, read_only):
                    row = plan(conn)
                    if fn.returns_set or fn.shape == "composite":
                        resp = self._read_response(req, offset, counted, row)
                        if not fn.returns_set and resp.status < 300:
                            resp.body = self._single_composite(resp.body)
                        return resp
            except psycopg.Error as exc:
                raise self._pg_error(exc, req) from None
        if fn.shape == "void":
            return _Response(204, [])
        assert row is not None
        return _Response(200, [("Content-Type", _JSON)], str(row[0]).encode())

    @staticmethod
    def _single_composite(body: bytes) -> bytes:
        text = body.decode().strip()
        if text in ("", "[]"):
            return b"null"
        if text.startswith("["):
            return text[1:-1].strip().encode()
        return text.encode()

    @staticmethod
    def _choose_function(
        schema: str, name: str, candidates: list[_Function], payload: Any
    ) -> _Function:
        given = frozenset(payload) if isinstance(payload, dict) else frozenset()
        matches = [
            f
            for f in candidates
            if isinstance(payload, dict)
            and not f.single_json_arg
            and given <= frozenset(f.arg_names)
            and f.required <= given
        ]
        if not matches:
            matches = [f for f in candidates if f.single_json_arg]
        if not matches and not isinstance(payload, dict):
            raise PgrstError(
                400, "PGRST102", "Empty or invalid json", "RPC arguments must be a JSON object"
            )
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise PgrstError(
                300,
                "PGRST203",
                "Could not choose the best candidate function between: "
                + ", ".join(f"{schema}.{name}({', '.join(f.arg_names)})" for f in matches),
            )
        hint = None
        if candidates:
            hint = f"Perhaps you meant to call the function {schema}.{name}({', '.join(candidates[0].arg_names)})"
        raise PgrstError(
            404,
            "PGRST202",
            f"Could not find the function {schema}.{name}({', '.join(sorted(given))}) in the "
            "schema cache",
            f"Searched for the function {schema}.{name} with parameters {', '.join(sorted(given))} "
            "or with a single unnamed json/jsonb parameter, but no matches were found in the "
            "schema cache.",
            hint,
        )

    def _rpc_statement(
        self,
        req: _Request,
        fn: _Function,
        p: _Params,
        payload: Any,
        raw: str,
        counted: bool,
    ) -> tuple[sql.Composable, list[Any], int]:
        args: list[Any] = []
        fn_ident = sql.Identifier(fn.schema, fn.name)
        if fn.single_json_arg:
            args.append(raw)
            call = sql.SQL("{}({}::{})").format(
                fn_ident, sql.Placeholder(), sql.Identifier(*fn.arg_types[0])
            )
            source = sql.SQL("{} AS pgrst_call").format(call)
        else:
            given = [n for n in fn.arg_names if n in payload]
            call = sql.SQL("{}({})").format(
                fn_ident,
                sql.SQL(", ").join(
                    sql.SQL("{n} := pgrst_args.{n}").format(n=sql.Identifier(n)) for n in given
                ),
            )
            if given:
                types = dict(zip(fn.arg_names, fn.arg_types, strict=True))
                args.append(raw)
                source = sql.SQL(
                    "json_to_record({}::json) AS pgrst_args({}) CROSS JOIN LATERAL {} AS pgrst_call"
                ).format(
                    sql.Placeholder(),
                    sql.SQL(", ").join(
                        sql.SQL("{} {}").format(sql.Identifier(n), sql.Identifier(*types[n]))
                        for n in given
                    ),
                    call,
                )
            else:
                source = sql.SQL("{} AS pgrst_call").format(call)
        if fn.shape in ("scalar", "void") and not fn.returns_set:
            if p.filters or p.order or p.select:
                raise _bad("filters, order and select need a function that returns rows")
            if fn.shape == "void":
                return sql.SQL("SELECT NULL FROM {}").format(source), args, 0
            return (
                sql.SQL("SELECT to_json(pgrst_call)::text FROM {}").format(source),
                args,
                0,
            )
        if fn.shape == "scalar":  # SETOF scalar: an array of values
            if p.filters or p.order or p.select:
                raise _unsupported("filters, order or select on a function returning SETOF scalar")
            cols: sql.Composable = sql.SQL("pgrst_call AS pgrst_value")
            agg = sql.SQL("json_agg(pgrst_page.pgrst_value)")
        else:
            cols = _select_list(p.select, "pgrst_call")
            agg = sql.SQL("json_agg(pgrst_page)")
        offset, limit = self._range(req, p, cap=True)
        where_params: list[Any] = []
        where = _where(p.filters, "pgrst_call", where_params)
        total: sql.Composable = sql.SQL("NULL::bigint")
        count_args: list[Any] = []
        if counted:
            count_where_params: list[Any] = []
            count_where = _where(p.filters, "pgrst_call", count_where_params)
            total = sql.SQL("(SELECT count(*) FROM {}{})").format(source, count_where)
            count_args = [*args, *count_where_params]
        query = sql.SQL(
            "SELECT {total}, count(*), coalesce({agg}, '[]')::text FROM "
            "(SELECT {cols} FROM {source}{where}{order} LIMIT {lim} OFFSET {off}) AS pgrst_page"
        ).format(
            total=total,
            agg=agg,
            cols=cols,
            source=source,
            where=where,
            order=_order_by(p.order, "pgrst_call"),
            lim=sql.Placeholder(),
            off=sql.Placeholder(),
        )
        return query, [*count_args, *args, *where_params, limit, offset], offset


# ---------------------------------------------------------------------------------------
# HTTP server


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], gateway: Gateway) -> None:
        self.gateway = gateway
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "rbmigrate-test-gateway/1"
    timeout = 60  # idle keep-alive connections end after this

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _serve(self) -> None:
        gateway = cast(_Server, self.server).gateway
        method = self.command.upper()
        body = self._read_body()
        split = urlsplit(self.path)
        started = time.monotonic()
        fault = gateway._take_fault()
        if fault is not None and fault[0] == "drop":
            gateway._record(LoggedRequest(method, split.path, split.query, 0, None))
            self.close_connection = True
            with suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        role: str | None = None
        if fault is not None:
            status, fault_body = fault[1], fault[2]
            if fault_body is None:
                fault_body = PgrstError(
                    status, "PGRST000", "injected fault (test gateway fail_next)"
                ).body()
            resp = _Response(status, [("Content-Type", _JSON)], fault_body)
        else:
            headers: dict[str, str] = {}
            for key, value in self.headers.items():
                lk = key.lower()
                headers[lk] = f"{headers[lk]}, {value}" if lk in headers else value
            resp, role = gateway.handle(method, self.path, headers, body)
        gateway._record(LoggedRequest(method, split.path, split.query, resp.status, role))
        self.send_response(resp.status)
        for key, value in resp.headers:
            self.send_header(key, value)
        if resp.status not in (204, 304) and resp.status >= 200:
            self.send_header("Content-Length", str(len(resp.body)))
        self.send_header("X-Gateway-Time", f"{time.monotonic() - started:.4f}")
        self.end_headers()
        if method != "HEAD" and resp.status not in (204, 304):
            self.wfile.write(resp.body)

    do_GET = _serve
    do_HEAD = _serve
    do_POST = _serve
    do_PATCH = _serve
    do_DELETE = _serve
    do_PUT = _serve
    do_OPTIONS = _serve
