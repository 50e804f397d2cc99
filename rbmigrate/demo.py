"""`rbmigrate demo`: a realistic ReasoningBank store to try the tool on in a minute.

Varied domains, workspaces, traces of one to three memories, outcomes, failures with error
context, parent links, naive local timestamps — written through the same layout as the
upstream server, embedded with all-MiniLM-L6-v2 (or random unit vectors for size tests).
"""

from __future__ import annotations

import random
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from rbmigrate.errors import ConfigError
from rbmigrate.storage.layout import chroma_record

MARKER = ".rbmigrate-demo"
COLLECTION = "reasoning_memories"
WORKSPACES = ("a1b2c3d4e5f60718", "0f1e2d3c4b5a6978", "9988776655443322")
CHUNK = 2000
POOL_FROM = 5000  # records from which the model processes pay back their loading

DOMAINS: dict[str, dict[str, list[str]]] = {
    "python_debugging": {
        "verbs": ["Fix", "Debug", "Track down", "Resolve", "Diagnose"],
        "objects": [
            "a KeyError in the config loader",
            "an off-by-one error in pagination",
            "a memory leak in the worker pool",
            "a race condition in the job queue",
            "flaky retries in the HTTP client",
            "a circular import between modules",
        ],
        "lessons": [
            "Reproduce the failure with the smallest input before changing code",
            "Log the inputs at the boundary where the bad value first appears",
            "Check mutable default arguments when state leaks between calls",
            "Pin the failing case in a regression test before fixing it",
        ],
    },
    "api_design": {
        "verbs": ["Design", "Version", "Document", "Paginate", "Harden"],
        "objects": [
            "the orders REST endpoint",
            "a webhook delivery API",
            "the search endpoint",
            "a bulk import API",
            "the authentication flow",
            "rate limits for the public API",
        ],
        "lessons": [
            "Use cursor pagination for lists that change while clients page",
            "Return problem details with a stable error code and a hint",
            "Make writes idempotent with a client-supplied request key",
            "Version the API in the path only when a change breaks clients",
        ],
    },
    "data_pipelines": {
        "verbs": ["Backfill", "Deduplicate", "Validate", "Speed up", "Repair"],
        "objects": [
            "the nightly events ETL",
            "a CSV ingestion job",
            "the customer dimension table",
            "late-arriving records in the stream",
            "a Parquet export",
            "the feature store sync",
        ],
        "lessons": [
            "Make every batch idempotent so a rerun cannot double count",
            "Validate schemas at ingestion and quarantine bad rows with a reason",
            "Checkpoint progress in the same transaction as the data",
            "Partition by event date, not by load date",
        ],
    },
    "sql_optimization": {
        "verbs": ["Optimize", "Index", "Rewrite", "Profile", "Tune"],
        "objects": [
            "a slow report query",
            "the join on order items",
            "a correlated subquery",
            "vacuum settings for a hot table",
            "the full-text search query",
            "a lock-heavy update",
        ],
        "lessons": [
            "Read the plan with EXPLAIN ANALYZE before adding an index",
            "Replace OFFSET paging with keyset paging on large tables",
            "Batch updates to keep transactions and locks short",
            "Use a partial index when queries filter on a rare value",
        ],
    },
    "devops": {
        "verbs": ["Automate", "Roll back", "Containerize", "Monitor", "Migrate"],
        "objects": [
            "the blue-green deploy",
            "a failing Kubernetes rollout",
            "TLS certificate renewal",
            "the CI cache",
            "log shipping to the central store",
            "the database failover drill",
        ],
        "lessons": [
            "Make the rollback path as tested as the deploy path",
            "Alert on symptoms users feel, not on every internal metric",
            "Keep secrets out of images and inject them at runtime",
            "Rehearse failover on a copy before the real switch",
        ],
    },
    "testing": {
        "verbs": ["Stabilize", "Add coverage to", "Speed up", "Refactor", "Property-test"],
        "objects": [
            "the flaky integration suite",
            "date handling across time zones",
            "the payment state machine",
            "snapshot tests of the dashboard",
            "the parser for legacy files",
            "fixtures shared between suites",
        ],
        "lessons": [
            "Test against real dependencies where the bugs actually live",
            "Freeze the clock instead of sleeping in tests",
            "Let property-based tests find the edge cases you did not think of",
            "Keep each test independent of execution order",
        ],
    },
    "security": {
        "verbs": ["Audit", "Patch", "Lock down", "Rotate", "Threat-model"],
        "objects": [
            "SQL built from user input",
            "service account permissions",
            "leaked API keys",
            "the session cookie settings",
            "row level security policies",
            "dependency CVEs",
        ],
        "lessons": [
            "Parameterize every query and quote every identifier",
            "Grant the least privilege a role needs and test the denial",
            "Rotate a leaked key first, investigate second",
            "Scope multi-tenant data by a claim the client cannot forge",
        ],
    },
    "frontend": {
        "verbs": ["Fix", "Speed up", "Make accessible", "Refactor", "Localize"],
        "objects": [
            "the checkout form validation",
            "a janky infinite scroll",
            "keyboard navigation in menus",
            "the state management of the editor",
            "date formats in the dashboard",
            "hydration mismatches on the landing page",
        ],
        "lessons": [
            "Measure with the profiler before memoizing anything",
            "Every interactive element needs a keyboard path and a label",
            "Keep server and client rendering deterministic",
            "Validate on the server even when the client validates",
        ],
    },
}
DIFFICULTIES = ["simple", "moderate", "complex", "expert"]
ERRORS = [
    "TimeoutError",
    "KeyError",
    "IntegrityError",
    "PermissionDenied",
    "OOMKilled",
    "AssertionError",
]


@dataclass
class DemoResult:
    path: Path
    records: int
    traces: int
    seconds: float = 0.0


def _memory(
    rng: random.Random, domain: str, task: str, outcome: str, when: datetime, parent: str | None
) -> dict[str, Any]:
    bank = DOMAINS[domain]
    lesson = rng.choice(bank["lessons"])
    other = rng.choice(bank["lessons"])
    failed = outcome == "failure"
    title = lesson.split(" ")[0] + " " + " ".join(lesson.split(" ")[1:5])
    prefix = "What went wrong" if failed else "What worked"
    item: dict[str, Any] = {
        "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "title": title,
        "description": f"{prefix} while working on: {task[:80]}",
        "content": f"{lesson}. {other}. Applied to {task.lower()[:60]}; "
        f"outcome {outcome} after {rng.randint(1, 6)} attempts.",
        "error_context": None,
        "parent_memory_id": parent,
        "derived_from": [parent] if parent else [],
        "evolution_stage": 1 if parent else 0,
        "pattern_tags": rng.sample(
            [
                "retry",
                "idempotency",
                "observability",
                "validation",
                "performance",
                "refactor",
                "regression",
                "security",
            ],
            k=rng.randint(1, 3),
        ),
        "difficulty_level": rng.choice(DIFFICULTIES),
        "domain_category": domain,
        "created_at": when.isoformat(),
    }
    if failed:
        item["error_context"] = {
            "error_type": rng.choice(ERRORS),
            "message": f"step {rng.randint(1, 9)} failed: {rng.choice(bank['objects'])}",
            "attempts": rng.randint(1, 5),
        }
    return item


def generate(records: int, seed: int = 7) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(id, document, metadata) for `records` memories grouped in traces of 1–3."""
    rng = random.Random(seed)
    start = datetime(2025, 6, 1, 9, 0, 0)
    made = 0
    ticket = 1000
    recent: list[str] = []
    while made < records:
        domain = rng.choice(list(DOMAINS))
        bank = DOMAINS[domain]
        ticket += rng.randint(1, 3)
        task = f"{rng.choice(bank['verbs'])} {rng.choice(bank['objects'])} (ticket {domain[:3].upper()}-{ticket})"
        outcome = rng.choices(["success", "failure", "partial"], weights=[60, 25, 15])[0]
        workspace = rng.choice(WORKSPACES) if rng.random() > 0.1 else None
        when = start + timedelta(minutes=made * 3 + rng.randint(0, 2))
        trace_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        for _ in range(min(rng.choice([1, 2, 2, 3]), records - made)):
            parent = rng.choice(recent) if recent and rng.random() < 0.1 else None
            item = _memory(rng, domain, task, outcome, when, parent)
            recent.append(item["id"])
            if len(recent) > 50:
                recent.pop(0)
            made += 1
            yield chroma_record(
                trace_id=trace_id,
                task=task,
                outcome=outcome,
                item=item,
                workspace_id=workspace,
                timestamp=when,
            )


def prepare_directory(path: Path, force: bool) -> None:
    if path.exists() and any(path.iterdir()):
        if not force:
            raise ConfigError(
                f"{path} already exists and is not empty.",
                title="Demo store exists",
                hint="pick another --chroma-path, or pass --force to replace a demo store.",
            )
        if not (path / MARKER).exists():
            raise ConfigError(
                f"{path} is not a demo store made by rbmigrate; --force will not delete it.",
                title="Refusing to delete",
                hint="pick another --chroma-path.",
            )
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)


def write_demo(
    path: Path,
    records: int = 500,
    *,
    seed: int = 7,
    embeddings: str = "real",
    space: str = "l2",
    force: bool = False,
    encode: Callable[[list[str]], np.ndarray] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> DemoResult:
    """Write the demo store; `embeddings` is "real" (all-MiniLM-L6-v2) or "random".

    `space` is the collection's distance (l2, the upstream default; ip; cosine), set through
    `hnsw:space` as the upstream server and older chromadb clients do.
    """
    import time

    import chromadb
    from chromadb.config import Settings

    if records < 1:
        raise ConfigError("--records must be at least 1.")
    if space not in ("l2", "ip", "cosine"):
        raise ConfigError(f"unknown distance space {space!r}.", hint="use l2, ip or cosine.")
    started = time.monotonic()
    prepare_directory(path, force)
    pool = None
    if encode is None and embeddings == "real":
        if records >= POOL_FROM:
            from rbmigrate.config import DEFAULT_MODEL
            from rbmigrate.encoder_pool import EncoderPool

            pool = EncoderPool(DEFAULT_MODEL)
            encode = pool.encode
        else:
            from rbmigrate.embeddings import Embedder

            encode = Embedder().encode
    rng = np.random.default_rng(seed)
    client = chromadb.PersistentClient(
        path=str(path), settings=Settings(anonymized_telemetry=False)
    )
    col = client.get_or_create_collection(
        COLLECTION,
        metadata={"description": "ReasoningBank memory storage", "hnsw:space": space},
        embedding_function=None,
    )
    traces: set[str] = set()
    chunk: list[tuple[str, str, dict[str, Any]]] = []
    written = 0

    def flush() -> None:
        nonlocal written
        docs = [c[1] for c in chunk]
        if encode is not None:
            vecs = encode(docs)
        else:
            vecs = rng.standard_normal((len(docs), 384)).astype(np.float32)
            vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        col.add(
            ids=[c[0] for c in chunk],
            documents=docs,
            metadatas=[c[2] for c in chunk],
            embeddings=np.asarray(vecs, dtype=np.float32),
        )
        written += len(chunk)
        chunk.clear()
        if progress:
            progress(written, records)

    try:
        for rec in generate(records, seed):
            traces.add(rec[2]["trace_id"])
            chunk.append(rec)
            if len(chunk) >= CHUNK:
                flush()
        if chunk:
            flush()
    finally:
        if pool is not None:
            pool.close()
    (path / MARKER).write_text(f"records={records} seed={seed} embeddings={embeddings}\n")
    client.clear_system_cache()
    return DemoResult(path, written, len(traces), time.monotonic() - started)
