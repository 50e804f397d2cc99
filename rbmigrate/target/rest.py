"""Supabase over REST (PostgREST, through supabase-py): one client with retries and clear errors.

supabase-py builds every request (paths, filters, ``Prefer`` headers, JSON bodies); this
module sends them, because supabase-py repeats only GET/HEAD on a 503 and never a write.
Here every request is repeated on a passing failure (429, a 5xx from the layers in front of
PostgREST, a dropped or reset connection) with backoff, and only requests that are safe to
repeat are ever sent: reads, upserts, and RPCs that recognise a replay. PostgREST's errors
(code, message, details, hint) become RbmigrateErrors with the documented exit codes.

What PostgREST imposes, and how it is met:
* at most ``max_rows`` rows per answer (1,000 on Supabase), whatever ``limit`` says: scans
  page by key (``key=gt.last``, ordered) until an empty page;
* filters live in the URL, which API gateways cap at 8-16 KB: ``in.(...)`` lists are cut
  into chunks of a few KB;
* vectors travel as text (``"[0.1,...]"``, what pgvector reads and writes), exactly.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np

from rbmigrate.config import Config, mask_dsn, resolve_secret
from rbmigrate.errors import ConfigError, Interrupted, TargetConnectionError
from rbmigrate.target.rest_errors import Problem, RequestTooLarge, map_problem

TIMEOUT = httpx.Timeout(120.0, connect=10.0)
RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 30.0)  # about 90 s in all
FIRST_CONTACT_DELAYS = (0.5, 1.0)  # a wrong URL fails in seconds, not minutes
PAGE = 1000  # rows asked per page; the server may answer fewer (max_rows)
URL_BUDGET = 4000  # characters of in.(...) values per request
CHUNK_MAX = 500  # values per in.(...) list

Filter = Callable[[Any], Any]  # applies filters to a postgrest-py builder


@dataclass(frozen=True)
class RestSettings:
    """Where the project is and the key to use (never shown; `shown()` is the URL only)."""

    url: str
    key: str = field(repr=False)
    schema: str = "public"

    def shown(self) -> str:
        return mask_dsn(self.url)


def rest_settings(cfg: Config) -> RestSettings:
    url = cfg.target.supabase_url.strip().rstrip("/")
    if url.endswith("/rest/v1"):
        url = url[: -len("/rest/v1")]
    raw = cfg.target.supabase_key
    if not raw:
        raise ConfigError(
            f"the REST transport ({mask_dsn(url)}) needs the project's service-role key.",
            title="No Supabase key",
            hint="export SUPABASE_KEY=... (Project Settings → API: service_role), or name the "
            "variable that holds it with --supabase-key-env VAR.",
        )
    key = resolve_secret(raw, "[target] supabase_key").strip()
    if not key:
        raise ConfigError("[target] supabase_key is empty.", title="No Supabase key")
    return RestSettings(url, key, cfg.target.schema)


# --- vectors --------------------------------------------------------------------------------


def vector_text(vec: Any) -> str | None:
    """float32 -> pgvector's text form. Nine significant digits give back the same float32
    (pgvector parses with strtof), bit for bit."""
    if vec is None:
        return None
    values = np.asarray(vec, dtype=np.float32).tolist()
    return "[" + ",".join(["%.9g"] * len(values)) % tuple(values) + "]"


def parse_vector(text: Any) -> np.ndarray | None:
    """pgvector's text form -> float32, rounded once. Parsing to float64 first and rounding
    again could land on a float32 midpoint and go the wrong way; those (rare) elements are
    decided exactly from the decimal text."""
    if text is None:
        return None
    if isinstance(text, list):
        tokens = [repr(float(x)) for x in text]
    else:
        body = str(text).strip()[1:-1]
        tokens = body.split(",") if body else []
    wide = np.array([float(t) for t in tokens], dtype=np.float64)
    out = wide.astype(np.float32)
    toward = np.nextafter(out, np.where(wide > out, np.float32(np.inf), np.float32(-np.inf)))
    mid = (out.astype(np.float64) + toward.astype(np.float64)) / 2
    for i in np.flatnonzero((wide == mid) & (out.astype(np.float64) != wide)):
        exact = Fraction(tokens[i].strip())
        low, high = sorted((out[i], toward[i]))
        half = (Fraction(float(low)) + Fraction(float(high))) / 2
        out[i] = high if exact > half else low if exact < half else out[i]
    return out


def chunks(
    values: Sequence[Any], budget: int = URL_BUDGET, most: int = CHUNK_MAX
) -> Iterator[list[Any]]:
    """Cut an in.(...) list so each request's URL stays short."""
    current: list[Any] = []
    size = 0
    for value in values:
        cost = len(quote(str(value), safe="")) + 3
        if current and (size + cost > budget or len(current) >= most):
            yield current
            current, size = [], 0
        current.append(value)
        size += cost
    if current:
        yield current


def content_range_total(header: str | None) -> int | None:
    if not header or "/" not in header:
        return None
    total = header.rsplit("/", 1)[1]
    return None if total == "*" else int(total)


# --- the client -----------------------------------------------------------------------------


class RestClient:
    """One HTTP session to the project's PostgREST. Thread-safe (httpx.Client is)."""

    def __init__(
        self,
        settings: RestSettings,
        *,
        cancel: threading.Event | None = None,
        on_retry: Callable[[str, int, str], None] | None = None,
    ) -> None:
        from supabase import ClientOptions, create_client

        self.settings = settings
        self.url = settings.shown()
        self.cancel = cancel or threading.Event()
        self.on_retry = on_retry
        self.contacted = False
        self.http = httpx.Client(timeout=TIMEOUT, follow_redirects=True)
        try:
            client = create_client(
                settings.url,
                settings.key,
                options=ClientOptions(
                    schema=settings.schema,
                    postgrest_client_retry=False,
                    auto_refresh_token=False,
                    persist_session=False,
                    httpx_client=self.http,
                ),
            )
        except Exception as exc:  # SupabaseException("Invalid URL") and the like
            self.http.close()
            raise ConfigError(
                f"cannot use {self.url} as a Supabase project URL: {exc}.",
                title="Bad Supabase URL",
                hint="pass the project URL, e.g. https://<project-ref>.supabase.co",
            ) from None
        self.pg = client.postgrest

    def close(self) -> None:
        self.http.close()

    # --- sending ---------------------------------------------------------------------------
    def send(
        self, builder: Any, what: str, *, delays: Sequence[float] | None = None
    ) -> httpx.Response:
        """Send one built request, repeating it on passing failures; raise a mapped error."""
        if delays is None:
            delays = RETRY_DELAYS if self.contacted else FIRST_CONTACT_DELAYS
        request = builder.request
        attempt = 0
        while True:
            extra = httpx.Headers({"X-Retry-Count": str(attempt)} if attempt else {})
            wait: float | None = None
            try:
                response = request.send(extra)
            except (httpx.UnsupportedProtocol, httpx.InvalidURL, httpx.LocalProtocolError) as exc:
                raise ConfigError(
                    f"cannot send requests to {self.url}: {exc}.",
                    title="Bad Supabase URL",
                    hint="pass the project URL, e.g. https://<project-ref>.supabase.co",
                ) from None
            except httpx.TransportError as exc:
                failure = f"{type(exc).__name__}: {str(exc)[:200] or 'no answer'}"
                if attempt >= len(delays):
                    raise TargetConnectionError(
                        f"cannot reach the Supabase API at {self.url} to {what} ({failure}).",
                        title="Cannot connect",
                        hint="check the project URL and the network; everything up to the last "
                        "checkpoint is committed, so running again resumes.",
                    ) from None
            else:
                if response.is_success:
                    self.contacted = True
                    return response  # type: ignore[no-any-return]
                self.contacted = True
                problem = Problem.from_response(
                    response.status_code, response.reason_phrase, response.content
                )
                if problem.too_large:
                    raise RequestTooLarge(
                        f"the API refused a request to {what} as too large or too slow "
                        f"({problem.text()}).",
                        len(json.dumps(request.json, default=str)) if request.json else 0,
                    )
                if not problem.transient or attempt >= len(delays):
                    raise map_problem(problem, what, self.url)
                failure = problem.text()
                retry_after = response.headers.get("Retry-After", "")
                if retry_after.isdigit():
                    wait = min(float(retry_after), 60.0)
            delay = max(delays[attempt], wait or 0.0)
            if self.on_retry is not None:
                self.on_retry(what, attempt + 1, failure)
            if self.cancel.wait(delay):
                raise Interrupted(f"Stopped while retrying a request to {what}.")
            attempt += 1

    def data(self, builder: Any, what: str) -> Any:
        response = self.send(builder, what)
        return json.loads(response.content) if response.content else None

    def rpc(self, function: str, params: dict[str, Any], what: str) -> Any:
        return self.data(self.pg.rpc(function, params), what)

    def count(self, table: str, what: str, *filters: Filter) -> int:
        """Rows matching the filters, from ``Prefer: count=exact`` (no rows are sent)."""
        from postgrest.types import CountMethod

        builder = self.pg.table(table).select("*", count=CountMethod.exact, head=True)
        for f in filters:
            builder = f(builder)
        response = self.send(builder, what)
        total = content_range_total(response.headers.get("Content-Range"))
        if total is None:
            raise TargetConnectionError(
                f"the API at {self.url} answered a count without a total (Content-Range: "
                f"{response.headers.get('Content-Range')!r}).",
                title="Not a Supabase API",
            )
        return total

    # --- reading many rows -------------------------------------------------------------------
    def scan(
        self, table: str, columns: str, key: str, what: str, *filters: Filter
    ) -> Iterator[list[dict[str, Any]]]:
        """Every matching row, page by page, ordered by `key` (unique among them). Stops at an
        empty page: a short page may only mean the server's max_rows is below PAGE."""
        last: Any = None
        while True:
            builder = self.pg.table(table).select(columns)
            for f in filters:
                builder = f(builder)
            if last is not None:
                builder = builder.gt(key, last)
            rows = self.data(builder.order(key).limit(PAGE), what) or []
            if not rows:
                return
            yield rows
            last = rows[-1][key]

    def select_in(
        self,
        table: str,
        columns: str,
        column: str,
        values: Iterable[Any],
        what: str,
        *filters: Filter,
    ) -> list[dict[str, Any]]:
        """Rows whose `column` is one of `values` (at most one row per value), in URL-sized
        chunks."""
        out: list[dict[str, Any]] = []
        for part in chunks([str(v) for v in values]):
            builder = self.pg.table(table).select(columns)
            for f in filters:
                builder = f(builder)
            out.extend(self.data(builder.in_(column, part), what) or [])
        return out
