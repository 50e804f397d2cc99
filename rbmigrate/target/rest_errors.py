"""PostgREST's answers, turned into errors a person can act on (and the documented exit codes).

PostgREST answers an error with ``{"code", "message", "details", "hint"}`` and an HTTP status
(a SQLSTATE for errors from PostgreSQL, ``PGRSTxxx`` for its own). What sits in front of it on
Supabase (the API gateway, a CDN) may answer with its own body instead. This module decides,
from the status and the code, whether a request is worth repeating and what to tell the user:
401 a bad key (exit 3); 403, or 401 for an anonymous key, missing rights (exit 4, as for a
direct connection); 404 for a missing table or function, a schema to paste (exit 4).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from rbmigrate.errors import RbmigrateError, SchemaError, TargetConnectionError

SERVICE_KEY_HINT = (
    "use the project's service-role key (Project Settings → API: service_role, or an "
    "sb_secret_ key): rbmigrate must see every workspace, so RLS must not filter what it reads."
)
PASTE_HINT = (
    "run `rbmigrate bootstrap --print-sql > schema.sql` and paste it into the Supabase SQL "
    "editor (or bootstrap once with --db-url), then run again."
)
# statuses an API gateway, a CDN or PostgREST answers for a passing problem
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504, 520, 521, 522, 523, 524, 525, 527})
# PostgREST: cannot reach the database / schema cache not loaded / pool busy
TRANSIENT_CODES = frozenset({"PGRST000", "PGRST001", "PGRST002", "PGRST003"})
# SQLSTATEs worth repeating: connection, resources, serialization, deadlock, shutdown
TRANSIENT_SQLSTATE_PREFIXES = ("08", "53", "40001", "40P01", "57P01", "57P02", "57P03")


@dataclass(frozen=True)
class Problem:
    """One failed answer, in PostgREST's shape (code is the status when the body is not)."""

    status: int
    code: str
    message: str
    details: str | None = None
    hint: str | None = None
    postgrest: bool = True  # the body was PostgREST's JSON

    @classmethod
    def from_response(cls, status: int, reason: str, body: bytes) -> Problem:
        try:
            data: Any = json.loads(body) if body else None
        except ValueError:
            data = None
        if isinstance(data, dict) and ("code" in data or "message" in data):
            details = data.get("details")
            return cls(
                status,
                str(data.get("code") or status),
                str(data.get("message") or reason or f"HTTP {status}"),
                details if details is None or isinstance(details, str) else json.dumps(details),
                data.get("hint") if isinstance(data.get("hint"), str) else None,
                postgrest="code" in data,
            )
        return cls(status, str(status), reason or f"HTTP {status}", None, None, postgrest=False)

    def text(self) -> str:
        parts = [f"{self.status} {self.code}: {self.message}"]
        if self.details:
            parts.append(f"details: {self.details[:300]}")
        if self.hint:
            parts.append(f"hint: {self.hint}")
        return "; ".join(parts)

    @property
    def transient(self) -> bool:
        if self.code in TRANSIENT_CODES or self.code.startswith(TRANSIENT_SQLSTATE_PREFIXES):
            return True
        if self.status == 500 and self.postgrest:
            return False  # a SQL error PostgREST maps to 500 (e.g. 21000): repeating fails again
        return self.status in TRANSIENT_STATUS

    @property
    def too_large(self) -> bool:
        """The request was too big for the gateway (413) or the statement timed out (57014)."""
        return self.status == 413 or self.code == "57014"


class RestRequestError(RbmigrateError):
    """PostgREST refused a request for a reason rbmigrate does not expect (a bug or a data
    problem): the message carries PostgREST's code, message, details and hint."""

    default_title = "Request refused"

    def __init__(self, message: str, problem: Problem, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.problem = problem


class RequestTooLarge(RbmigrateError):
    """A write was too large for the API (413) or its statement timed out: send less at once."""

    default_title = "Request too large"

    def __init__(self, message: str, sent_bytes: int) -> None:
        super().__init__(message)
        self.sent_bytes = sent_bytes


def map_problem(problem: Problem, what: str, url: str) -> RbmigrateError:
    """The error to raise for a final (not retried, or retried in vain) failed answer."""
    status, code = problem.status, problem.code
    said = problem.text()
    if (status == 401 and code == "42501") or status == 403:
        return SchemaError(
            f"the key may not {what} at {url} ({said}).",
            title="Not allowed",
            hint=SERVICE_KEY_HINT,
        )
    if status == 401:
        return TargetConnectionError(
            f"the Supabase API at {url} rejected the key ({said}).",
            title="Authentication failed",
            hint="check SUPABASE_KEY (or the variable --supabase-key-env names): it must be "
            "this project's service-role key, unexpired.",
        )
    if code in ("PGRST205", "PGRST202", "42P01", "42883"):
        return SchemaError(
            f"the rbmigrate schema is missing or incomplete at {url}: cannot {what} ({said}).",
            title="Schema missing",
            hint=PASTE_HINT,
        )
    if code == "PGRST106":
        return SchemaError(
            f"the API at {url} does not expose the schema needed to {what} ({said}).",
            title="Schema not exposed",
            hint="add the schema under Project Settings → API → Exposed schemas, or use "
            "--schema public.",
        )
    if problem.transient:
        return TargetConnectionError(
            f"the Supabase API at {url} stayed unavailable: cannot {what} ({said}).",
            title="API unavailable",
            hint="everything up to the last checkpoint is committed; run the same command again "
            "to resume.",
        )
    if status == 404 or (not problem.postgrest and status < 500):
        return TargetConnectionError(
            f"{url} does not answer like a Supabase project API ({said}).",
            title="Not a Supabase API",
            hint="pass the project URL, e.g. https://<project-ref>.supabase.co (without /rest/v1).",
        )
    return RestRequestError(
        f"PostgREST refused to {what} ({said}).",
        problem,
        title="Conflict" if status == 409 else "Request refused",
        hint="this is unexpected; the run's run.log has the request, and a report of it helps.",
    )
