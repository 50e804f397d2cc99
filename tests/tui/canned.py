"""Fixed engine reports for snapshots, shaped like real ones (taken from real runs, then pinned).

Paths, run ids, versions and timings are constants so the screens render the same every time.
"""

from __future__ import annotations

import copy
from typing import Any

from rbmigrate.engine.api import Outcome
from rbmigrate.errors import (
    ExitCode,
    Interrupted,
    RbmigrateError,
    SchemaError,
    TargetConnectionError,
    VerificationFailed,
)

DATA = "/home/ana/.local/share/rbmigrate"
WORKSPACES = ("0f1e2d3c4b5a6978", "9988776655443322", "a1b2c3d4e5f60718")


def run_dir(run_id: str) -> str:
    return f"{DATA}/runs/{run_id}"


def base(command: str, run_id: str) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "command": command,
        "status": "ok",
        "run_dir": run_dir(run_id),
        "source": None,
        "target": None,
        "counts": {},
        "plan": None,
        "verify": None,
        "rejects_by_code": {},
        "warnings_by_code": {},
        "rejects_file": None,
        "error": None,
    }


def fail(report: dict[str, Any], error: RbmigrateError) -> Outcome:
    report["status"] = "interrupted" if isinstance(error, Interrupted) else "failed"
    report["error"] = {
        "title": error.title,
        "message": error.message,
        "hint": error.hint,
        "exit_code": int(error.exit_code),
    }
    return Outcome(report, error.exit_code, error)


SOURCE = {
    "kind": "persistent",
    "location": "./chroma_data",
    "chroma_format": "chromadb 1.1–1.5 (current)",
    "reader": "native",
    "collections": [
        {
            "name": "reasoning_memories",
            "count": 100000,
            "dimension": 384,
            "space": "l2",
            "layout": "reasoningbank",
        },
        {
            "name": "scratch_notes",
            "count": 12,
            "dimension": 768,
            "space": "cosine",
            "layout": "unknown",
        },
    ],
}

TARGET = {
    "transport": "postgres",
    "kind": "embedded",
    "location": "postgresql://postgres@/reasoningbank?host=/tmp/rbm-socket&port=5432",
    "server_version": "16.2",
    "pgvector_version": None,
    "is_supabase": False,
}


def scan(run_id: str) -> Outcome:
    report = base("scan", run_id)
    report["source"] = copy.deepcopy(SOURCE)
    report["scan"] = {
        "selected": ["reasoning_memories"],
        "problems": [],
        "notes": [],
        "dimension": 384,
    }
    return Outcome(report, ExitCode.OK)


# A fixed object list (the live schema.sql grows; snapshots must not move with it).
OBJECTS = [
    "extension vector",
    *(
        f"table {t}"
        for t in (
            "reasoning_traces",
            "memory_items",
            "rbmigrate_runs",
            "rbmigrate_checkpoints",
            "rbmigrate_changes",
        )
    ),
    *(
        f"column {c}"
        for c in (
            "reasoning_traces.source_id",
            "reasoning_traces.source_hash",
            "memory_items.source_id",
            "memory_items.source_collection",
            "memory_items.source_hash",
            "memory_items.metadata",
        )
    ),
    *(
        f"index {i}"
        for i in (
            "idx_runs_fingerprint",
            "idx_traces_outcome",
            "idx_traces_timestamp",
            "idx_traces_workspace",
            "idx_memories_trace",
            "idx_memories_domain",
            "idx_memories_workspace",
            "idx_memories_source",
            "idx_memories_tags",
            "idx_traces_embedding",
            "idx_memories_embedding",
        )
    ),
    *(
        f"function {f}"
        for f in (
            "update_updated_at_column",
            "check_pgvector_enabled",
            "search_similar_memories",
            "search_similar_traces",
            "get_reasoning_bank_stats",
        )
    ),
    "trigger update_traces_updated_at on reasoning_traces",
    "trigger update_memories_updated_at on memory_items",
    *(
        f"policy {p}"
        for p in (
            "rbm_service_all on reasoning_traces",
            "rbm_workspace_member on reasoning_traces",
            "rbm_service_all on memory_items",
            "rbm_workspace_member on memory_items",
        )
    ),
]

SQL = """-- rbmigrate: ReasoningBank schema for Supabase / PostgreSQL + pgvector (384-d)
-- Safe to run any number of times.
SET search_path = public, extensions;
CREATE EXTENSION IF NOT EXISTS vector WITH SCHEMA extensions;

CREATE TABLE IF NOT EXISTS public.reasoning_traces (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    task text NOT NULL,
    trajectory jsonb NOT NULL DEFAULT '[]'::jsonb,
    outcome text NOT NULL CHECK (outcome IN ('success', 'failure', 'partial')),
    task_embedding vector(384),
    workspace_id text,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS public.memory_items (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    trace_id uuid NOT NULL REFERENCES public.reasoning_traces (id) ON DELETE CASCADE,
    title text NOT NULL,
    content text NOT NULL,
    content_embedding vector(384),
    workspace_id text
);

CREATE INDEX IF NOT EXISTS idx_memories_embedding
    ON public.memory_items USING hnsw (content_embedding vector_cosine_ops);
ALTER TABLE public.memory_items ENABLE ROW LEVEL SECURITY;
"""


def schema_status(state: str) -> dict[str, Any]:
    everything = list(OBJECTS)
    present = everything if state == "ready" else []
    problems = []
    if state == "incompatible":
        present = everything[:3]
        problems = ["memory_items.content_embedding is vector(768); this source needs vector(384)"]
    missing = [o for o in everything if o not in present]
    return {
        "schema": "public",
        "dimension_wanted": 384,
        "server_version": "16.2",
        "pgvector_version": "0.6.2" if state != "missing" else None,
        "pgvector_available": "0.6.2",
        "is_supabase": False,
        "present": present,
        "missing": missing,
        "dimensions": {},
        "problems": problems,
        "state": state,
    }


def test_target(run_id: str, state: str = "missing") -> Outcome:
    report = base("bootstrap", run_id)
    report["target"] = dict(TARGET, pgvector_version=None if state == "missing" else "0.6.2")
    status = schema_status(state)
    report["schema"] = {"before": status, "after": status, "dimension": 384, "applied": False}
    if state == "incompatible":
        return fail(
            report,
            SchemaError(
                "the target's memory_items.content_embedding is vector(768), this source is 384-d.",
                title="Incompatible schema",
                hint="migrate into another schema ([target] schema), or deselect the collection.",
            ),
        )
    return Outcome(report, ExitCode.OK)


def auth_failed(run_id: str, shown_url: str) -> Outcome:
    report = base("bootstrap", run_id)
    return fail(
        report,
        TargetConnectionError(
            f"PostgreSQL rejected the credentials for {shown_url}: password authentication "
            'failed for user "postgres"',
            title="Authentication failed",
            hint="check the user and password in the connection string (e.g. SUPABASE_DB_URL).",
        ),
    )


def apply(run_id: str) -> Outcome:
    report = base("bootstrap", run_id)
    report["target"] = dict(TARGET, pgvector_version="0.6.2")
    report["schema"] = {
        "before": schema_status("missing"),
        "after": schema_status("ready"),
        "dimension": 384,
        "applied": True,
    }
    return Outcome(report, ExitCode.OK)


def plan(run_id: str, *, invalid: bool = False) -> Outcome:
    report = base("plan", run_id)
    report["source"] = copy.deepcopy(SOURCE)
    report["target"] = dict(TARGET)
    rows = [
        {"collection": "reasoning_memories", "workspace": None, "new": 9_870, "changed": 0},
        {
            "collection": "reasoning_memories",
            "workspace": WORKSPACES[0],
            "new": 30_120,
            "changed": 40,
        },
        {
            "collection": "reasoning_memories",
            "workspace": WORKSPACES[1],
            "new": 29_950,
            "changed": 0,
        },
        {
            "collection": "reasoning_memories",
            "workspace": WORKSPACES[2],
            "new": 30_008,
            "changed": 0,
        },
    ]
    for row in rows:
        row.update({"unchanged": 0, "target_only": 0, "invalid": 0, "skipped": 0})
    rows.append(
        {
            "collection": "scratch_notes",
            "workspace": None,
            "new": 0,
            "changed": 0,
            "unchanged": 0,
            "target_only": 0,
            "invalid": 0,
            "skipped": 12,
        }
    )
    invalid_by_code: dict[str, Any] = {}
    if invalid:
        rows[1]["new"] -= 12
        rows[1]["invalid"] = 9
        rows[2]["invalid"] = 3
        invalid_by_code = {
            "invalid_outcome": {
                "count": 9,
                "samples": [
                    {
                        "source_id": f"7c1e4b2a-0000-4000-8000-00000000000{i}",
                        "message": "outcome 'meh' is not success, failure or partial",
                    }
                    for i in range(5)
                ],
            },
            "non_finite_embedding": {
                "count": 3,
                "samples": [
                    {"source_id": "legacy-memory-17", "message": "embedding holds NaN or Infinity"}
                ],
            },
        }
    new = sum(r["new"] for r in rows)
    bad = sum(r["invalid"] for r in rows)
    report["counts"] = {
        "source_records": 100_012,
        "inserted": new,
        "updated": 40,
        "unchanged": 0,
        "rejected": bad,
        "skipped": 12,
        "traces_inserted": 41_233,
        "traces_updated": 0,
        "warnings": 57,
        "dry_run": True,
    }
    report["plan"] = {
        "new": new,
        "changed": 40,
        "unchanged": 0,
        "target_only": 0,
        "invalid": bad,
        "skipped": 12,
        "by_collection": rows,
        "invalid_by_code": invalid_by_code,
        "traces": {"new": 41_233, "changed": 0, "unchanged": 0},
        "collection_problems": [
            {
                "collection": "scratch_notes",
                "code": "unknown_layout",
                "refused": False,
                "message": "scratch_notes is not in the ReasoningBank layout (not selected)",
            }
        ],
        "schema": schema_status("missing"),
        "estimate_s": {"read": 6.7, "write": 8.3, "index": 94.2, "encode": 103.1, "total": 212.3},
    }
    report["warnings_by_code"] = {
        "non_uuid_id": 31,
        "parent_not_found": 24,
        "invalid_difficulty": 2,
    }
    if invalid:
        report["rejects_by_code"] = {"invalid_outcome": 9, "non_finite_embedding": 3}
        return fail(
            report,
            VerificationFailed(
                f"{bad} records are invalid and would be rejected (max_rejects = 0).",
                title="Too many rejects",
                hint="see invalid_by_code in the report; fix them at the source, map outcomes "
                "with [migration] outcome_map, or raise max_rejects to accept them.",
            ),
        )
    return Outcome(report, ExitCode.OK)


def inspect_rejected() -> Outcome:
    record = {
        "source": {
            "id": "7c1e4b2a-0000-4000-8000-000000000000",
            "document": "Check the retry budget\nWhat went wrong while working on: Harden the "
            "webhook delivery API\nRetries without a budget stormed the upstream.",
            "metadata": {
                "outcome": "meh",
                "trace_id": "2f0c8e4e-9d1b-4c53-9b1e-3a0d2c1b0a99",
                "task": "Harden the webhook delivery API (ticket API-1043)",
                "timestamp": "2025-06-01T09:12:00",
                "workspace_id": WORKSPACES[0],
            },
            "embedding": "384 floats [0.0523, -0.0009, -0.0520, …] norm 1.000",
        },
        "row": None,
        "reject": {
            "code": "invalid_outcome",
            "message": "outcome 'meh' is not success, failure or partial",
            "rule": "outcome is not success/failure/partial; map it with [migration] outcome_map",
        },
        "warnings": [],
        "skipped": False,
    }
    return Outcome(
        {"command": "inspect", "status": "ok", "error": None, "record": record}, ExitCode.OK
    )


def migrate(run_id: str) -> Outcome:
    report = base("migrate", run_id)
    report["source"] = copy.deepcopy(SOURCE)
    report["target"] = dict(TARGET, pgvector_version="0.6.2")
    report["counts"] = {
        "source_records": 100_012,
        "inserted": 99_960,
        "updated": 40,
        "unchanged": 0,
        "rejected": 0,
        "skipped": 12,
        "traces_inserted": 41_233,
        "traces_updated": 0,
        "warnings": 57,
    }
    report["verify"] = {"ok": True, "checked": 100_000, "missing": 0, "mismatched": 0, "extra": 0}
    report["rejects_file"] = f"{run_dir(run_id)}/rejects.jsonl"
    return Outcome(report, ExitCode.OK)


def interrupted(run_id: str) -> Outcome:
    report = base("migrate", run_id)
    return fail(
        report,
        Interrupted(
            "Stopped on request between batches; everything committed so far is kept.",
            hint=f"resume with: rbmigrate --headless migrate --resume {run_id}",
        ),
    )


def hits(titles: list[str], ids: list[str], start: float) -> list[dict[str, Any]]:
    return [
        {
            "rank": i + 1,
            "id": ident,
            "source_id": ident,
            "title": title,
            "distance": 2 * (1 - (start - 0.031 * i)),
            "similarity": start - 0.031 * i,
            "workspace_id": WORKSPACES[i % 3],
            "collection": "reasoning_memories",
        }
        for i, (title, ident) in enumerate(zip(titles, ids, strict=True))
    ]


TITLES = [
    "Reproduce the failure with the smallest input",
    "Log the inputs at the boundary where",
    "Check mutable default arguments when state leaks",
    "Pin the failing case in a regression",
    "Use cursor pagination for lists that change",
]


def compare(run_id: str) -> Outcome:
    report = base("compare", run_id)
    ids = [f"id-{i}" for i in range(5)]
    target_ids = [*ids[:4], "id-9"]
    target_titles = [*TITLES[:4], "Return problem details with a stable error code"]
    report["compare"] = {
        "query": "KeyError in the config loader",
        "k": 5,
        "workspace": None,
        "chroma": hits(TITLES, ids, 0.712),
        "target": hits(target_titles, target_ids, 0.712),
        "overlap_at_k": 0.8,
        "rank_agreement": 0.95,
        "latency_ms": {"chroma": 5.8, "target": 1.3},
    }
    return Outcome(report, ExitCode.OK)


def parity(run_id: str) -> Outcome:
    report = base("compare", run_id)
    groups = {
        ws: {"queries": 20, "recall_at_k_mean": 1.0, "recall_at_k_min": 1.0} for ws in WORKSPACES
    }
    groups[WORKSPACES[1]] = {"queries": 20, "recall_at_k_mean": 0.99, "recall_at_k_min": 0.8}
    groups["(all)"] = {"queries": 20, "recall_at_k_mean": 1.0, "recall_at_k_min": 1.0}
    report["compare"] = {
        "queries": 80,
        "k": 5,
        "recall_at_k_mean": 0.9975,
        "recall_at_k_min": 0.8,
        "by_workspace": groups,
        "worst": [{"query": "Alert on symptoms users feel, not on causes", "recall_at_k": 0.8}],
        "latency_ms": {
            "chroma": {"p50": 1.5, "p95": 5.5, "mean": 2.1},
            "target": {"p50": 0.5, "p95": 5.4, "mean": 1.8},
        },
    }
    return Outcome(report, ExitCode.OK)


def compare_no_schema(run_id: str) -> Outcome:
    return fail(
        base("compare", run_id),
        SchemaError(
            "the target has no ReasoningBank tables to search.",
            hint="migrate first: rbmigrate --headless",
        ),
    )


def doctor(run_id: str) -> Outcome:
    """A preflight with one warning and one failure, as `rbmigrate doctor` reports them."""
    report = base("doctor", run_id)
    checks = [
        ("source", "ok", "./chroma_data: chromadb 1.1–1.5 (current), 2 collections, 100,012 records", ""),
        ("snapshot space", "ok", "needs 742 MB, 18.3 GB free in /home/ana/.local/share/rbmigrate", ""),
        ("source in use", "warn", "chroma.sqlite3 is open in python (pid 4242)",
         "stop the ReasoningBank server first, or read through a Chroma server (--chroma-url)."),
        ("target reachable", "ok", "postgresql://postgres:***@db.example.supabase.co:5432/postgres", ""),
        ("credentials", "ok", "logged in as postgres", ""),
        ("connection kind", "fail", "Supabase transaction pooler (port 6543)",
         "use the direct connection or the session pooler (port 5432): binary COPY and SET need a session."),
        ("versions", "ok", "PostgreSQL 16.2, pgvector 0.8.0", ""),
        ("vector extension", "ok", "installed (0.8.0)", ""),
        ("permissions", "ok", "can create tables, functions and policies in public", ""),
        ("schema", "ok", "schema 'public' is missing: 38 objects to create", ""),
        ("statement timeout", "ok", "no statement timeout", ""),
        ("embedding model", "ok", "all-MiniLM-L6-v2 (384-d), loaded offline", ""),
        ("estimate", "ok", "1.0 GB on the target (684 MB tables, 306 MB HNSW); about 4 min here", ""),
    ]  # fmt: skip
    report["doctor"] = {
        "ok": False,
        "checks": [{"name": n, "status": s, "detail": d, "advice": a} for n, s, d, a in checks],
        "failed": ["connection kind"],
        "warnings": ["source in use"],
    }
    return Outcome(report, ExitCode.CONNECTION)
