"""Crash torture: SIGKILL a real `rbmigrate migrate` at seeded random points in every phase,
resume each time (killing resumes too), and prove the end state equals a clean migration.

Kill points are chosen from what the process prints on stderr (`-> PHASE` when a phase
starts, `   PHASE done: ...` when it ends) plus a random delay scaled to how long that
phase took in a clean reference run on this machine. After each kill the partial target
must hold whole batches only; at the end it must equal the reference, hash for hash.

The seed is printed; set RBM_TORTURE_SEED=<int> to replay a run, or =random for a new one.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

from tests.support.cli import cli_env, run_cli
from tests.support.pg import PgServer
from tests.support.stores import item, rb_metadata, tree_state, write_store

BATCH = 500
NS = uuid.UUID("6f1c2b8e-2d0a-4c57-9a55-2f7f4f1d0c11")
WORKSPACES = ["a1" * 8, "b2" * 8, "c3" * 8, None]
DOMAINS = ["testing", "databases", "networking", "deployment"]
# the phases the CLI announces, in the order a run goes through them
PHASES = ("connect", "snapshot", "discover", "bootstrap", "scan", "traces")
PHASES += ("write", "delete-missing", "embed", "index", "verify")
READ_PHASES = {"startup", "connect", "snapshot", "discover", "bootstrap", "scan", "traces"}
HNSW = {"idx_memories_embedding", "idx_traces_embedding"}


# --- the store ---------------------------------------------------------------------------


@dataclass
class Store:
    path: Path
    records: int
    traces: int


def build_store(path: Path, n: int, seed: int = 5) -> Store:
    """A ReasoningBank store as the upstream server writes it: UUID ids, 384-d vectors, one
    record per memory, traces of 15-25 memories with a task each (some tasks repeat), four
    workspaces (one of them absent), failures with error context, evolved memories."""
    rng = random.Random(seed)
    recs: list[tuple[str, str, dict[str, Any], None]] = []
    i = trace_no = 0
    while i < n:
        size = min(rng.randint(15, 25), n - i)
        trace_id = str(uuid.uuid5(NS, f"trace-{trace_no}"))
        outcome = ["success", "failure", "success", "partial"][trace_no % 4]
        task = f"Torture task {trace_no % 250}: move the memories of workspace {trace_no % 4}"
        for _ in range(size):
            mid = str(uuid.uuid5(NS, f"mem-{i}"))
            parent = str(uuid.uuid5(NS, f"mem-{i - 7}")) if i % 10 == 9 else None
            mem = item(
                mid,
                title=f"Memory {i}",
                description=f"What memory {i} teaches about step {i % 17}",
                content=f"When step {i % 17} fails, retry with a smaller batch ({i}).",
                error_context=f"Timeout at step {i % 17}" if outcome == "failure" else None,
                parent_memory_id=parent,
                evolution_stage=1 if parent else 0,
                pattern_tags=[f"tag{i % 5}", f"step{i % 17}"],
                difficulty_level=["simple", "moderate", "complex"][i % 3],
                domain_category=DOMAINS[trace_no % 4],
                created_at=f"2025-{1 + trace_no % 12:02d}-{1 + i % 28:02d}T10:{i % 60:02d}:00",
            )
            extra: dict[str, Any] = {
                "domain_category": mem["domain_category"],
                "difficulty_level": mem["difficulty_level"],
            }
            if mem["error_context"]:
                extra["has_error_context"] = True
            meta = rb_metadata(
                trace_id=trace_id,
                task=task,
                outcome=outcome,
                timestamp=f"2025-{1 + trace_no % 12:02d}-{1 + i % 28:02d}T10:{i % 60:02d}:00",
                item=mem,
                workspace_id=WORKSPACES[trace_no % 4],
                extra=extra,
            )
            doc = f"{mem['title']}\n{mem['description']}\n{mem['content']}"
            recs.append((mid, doc, meta, None))
            i += 1
        trace_no += 1
    write_store(path, recs)
    return Store(path, n, trace_no)


# --- watching a run's stderr -------------------------------------------------------------

START = re.compile(r"^-> (\S+)")
DONE = re.compile(r"^\s+(\S+) done:")


class Watcher:
    """Reads a run's stderr in a thread: every line, and phase start/done events with times."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.events: list[tuple[float, str, str]] = []  # (monotonic, "start"|"done", phase)
        self.eof = False
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            now = time.monotonic()
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                if m := START.match(line):
                    self.events.append((now, "start", m.group(1)))
                elif m := DONE.match(line):
                    self.events.append((now, "done", m.group(1)))
                self.cond.notify_all()
        with self.cond:
            self.eof = True
            self.cond.notify_all()

    def wait_until(self, reached: Any, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: self.eof or reached(self.events), timeout)

    def join(self) -> None:
        self.thread.join(30)

    def state(self) -> str:
        """Where the run was: the last phase started, with ' done' once it finished."""
        with self.cond:
            if not self.events:
                return "startup"
            _t, kind, phase = self.events[-1]
            return phase if kind == "start" else f"{phase} done"

    def durations(self) -> dict[str, float]:
        """Seconds per phase, and 'prepare': from the end of `traces` to the start of `write`
        (the run is registered and the embedding model loads)."""
        starts: dict[str, float] = {}
        out: dict[str, float] = {}
        for t, kind, phase in self.events:
            if kind == "start":
                starts[phase] = t
            elif phase in starts:
                out[phase] = t - starts[phase]
                if phase == "traces":
                    starts["prepare"] = t
            if kind == "start" and phase == "write" and "prepare" in starts:
                out["prepare"] = t - starts["prepare"]
        return out

    def text(self) -> str:
        with self.cond:
            return "\n".join(self.lines)


def category(state: str) -> str:
    phase = state.removesuffix(" done")
    if phase in READ_PHASES:
        return "read/plan"
    return phase


def migrate_args(store: Path, db_url: str, *extra: str) -> list[str]:
    return [
        "--headless",
        "migrate",
        "--chroma-path",
        str(store),
        "--db-url",
        db_url,
        "--batch-size",
        str(BATCH),
        *extra,
    ]


def spawn(store: Path, db_url: str, data_dir: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "rbmigrate", *migrate_args(store, db_url, *extra)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(data_dir),
    )


# --- kill points -------------------------------------------------------------------------


@dataclass
class KillPoint:
    target: str  # the phase category aimed at
    marker: tuple[str, str]  # ("start"|"done", phase): the event that arms the kill
    fraction: float  # delay after the marker, as a fraction of that phase's reference time

    def reached(self, events: list[tuple[float, str, str]]) -> bool:
        """The marker was printed, or the run is already past it."""
        return any((kind, phase) == self.marker for _t, kind, phase in events) or self.passed(
            events
        )

    def passed(self, events: list[tuple[float, str, str]]) -> bool:
        """A phase after the marker's started: the aimed phase is over (or was skipped, as
        the index build is once the indexes exist), so the kill happens now."""
        rank = PHASES.index(self.marker[1])
        return any(
            kind == "start" and phase in PHASES and PHASES.index(phase) > rank
            for _t, kind, phase in events
        )


@dataclass
class Kill:
    point: KillPoint
    delay: float
    state: str  # where stderr says the run was when it died ("completed" if it was not killed)
    rows: int
    traces: int

    @property
    def phase(self) -> str:
        return category(self.state)


def plan_kills(rng: random.Random, n: int) -> list[KillPoint]:
    """n kill points in an order a real run can meet them: write kills before the embed
    kill, before index kills, before verify kills; read/plan kills anywhere (every resume
    reads and plans again)."""
    if n >= 5:
        counts = Counter({"read/plan": 2, "write": 2, "embed": 1, "index": 2, "verify": 2})
        # an index kill leaves the server building that index: the next run finds it built,
        # so more than two rarely meet a build; every resume verifies again
        weights = {"read/plan": 4, "write": 3, "index": 1, "verify": 3}
        for _ in range(n - sum(counts.values())):
            counts[rng.choices(list(weights), list(weights.values()))[0]] += 1
    else:
        counts = Counter(rng.sample(["read/plan", "write", "index", "verify"], n))

    def point(target: str) -> KillPoint:
        if target == "read/plan":
            marker = rng.choice(
                [("start", "snapshot"), ("start", "scan"), ("start", "traces"), ("done", "traces")]
            )
            return KillPoint(target, marker, rng.uniform(0.0, 0.8))
        # a write kill lets a resume commit ~a fifth of the batches: several fit in one load
        spread = {"write": (0.05, 0.3), "embed": (0.0, 0.7), "index": (0.05, 0.6)}
        low, high = spread.get(target, (0.0, 0.6))
        return KillPoint(target, ("start", target), rng.uniform(low, high))

    ordered: list[KillPoint] = []
    for target in ("write", "embed", "index", "verify"):
        ordered += [point(target) for _ in range(counts[target])]
    for _ in range(counts["read/plan"]):
        ordered.insert(rng.randint(0, len(ordered)), point("read/plan"))
    return ordered


# --- database checks ---------------------------------------------------------------------


def committed(db_url: str, admin: psycopg.Connection | None = None) -> tuple[int, ...]:
    """rows, distinct source ids, inserts the checkpoints account for, traces, trace inserts;
    one statement, so one snapshot: a batch and its checkpoint are seen together or not."""
    with (
        contextlib.nullcontext(admin) if admin else psycopg.connect(db_url, autocommit=True) as conn
    ):
        if conn.execute("SELECT to_regclass('rbmigrate_checkpoints')").fetchone()[0] is None:
            if conn.execute("SELECT to_regclass('memory_items')").fetchone()[0] is None:
                return 0, 0, 0, 0, 0
            rows = conn.execute("SELECT count(*) FROM memory_items").fetchone()[0]
            return rows, rows, 0, 0, 0
        row = conn.execute(
            "SELECT (SELECT count(*) FROM memory_items),"
            " (SELECT count(DISTINCT source_id) FROM memory_items),"
            " (SELECT coalesce(sum((counts->>'inserted')::bigint), 0) FROM rbmigrate_checkpoints),"
            " (SELECT count(*) FROM reasoning_traces),"
            " (SELECT coalesce(sum((counts->>'traces_inserted')::bigint), 0)"
            "    FROM rbmigrate_checkpoints)"
        ).fetchone()
    return tuple(int(v) for v in row)


def assert_whole_batches(
    db_url: str, total: int, batch: int = BATCH, admin: psycopg.Connection | None = None
) -> tuple[int, int]:
    rows, distinct, inserts, traces, trace_inserts = committed(db_url, admin)
    assert rows == distinct, f"{rows - distinct} duplicate memories"
    assert rows == inserts, f"{rows} rows but the checkpoints account for {inserts}"
    assert traces == trace_inserts, f"{traces} traces, checkpoints say {trace_inserts}"
    assert rows % batch == 0 or rows == total, f"{rows} rows: a half-written batch"
    return rows, traces


MEMORY_DIGEST = (
    "SELECT source_id, source_hash, md5(concat_ws('|', id, trace_id, title, description, "
    "content, content_embedding::text, error_context, pattern_tags::text, difficulty_level, "
    "domain_category, parent_memory_id, evolution_stage, workspace_id, created_at, "
    "source_collection, metadata::text)) FROM memory_items"
)
TRACE_DIGEST = (
    "SELECT source_id, source_hash, md5(concat_ws('|', id, task, trajectory::text, outcome, "
    "metadata::text, parent_trace_id, timestamp, num_memories, workspace_id)), "
    "task_embedding::text FROM reasoning_traces"
)
INDEXES = (
    "SELECT c.relname, i.indisvalid AND i.indisready, a.amname FROM pg_index i"
    " JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam"
    " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'"
)


def snapshot_target(db_url: str) -> dict[str, Any]:
    with psycopg.connect(db_url) as conn:
        memories = conn.execute(MEMORY_DIGEST).fetchall()
        traces = conn.execute(TRACE_DIGEST).fetchall()
        indexes = conn.execute(INDEXES).fetchall()
        runs = conn.execute(
            "SELECT run_id, status, phase, counts, deferred_indexes FROM rbmigrate_runs"
            " WHERE command = 'migrate' ORDER BY started_at"
        ).fetchall()
    return {"memories": memories, "traces": traces, "indexes": indexes, "runs": runs}


def vec(text: str | None) -> np.ndarray:
    assert text is not None, "a trace without task_embedding"
    return np.array([float(x) for x in text.strip("[]").split(",")], dtype=np.float32)


def assert_equals_reference(got: dict[str, Any], ref: dict[str, Any], store: Store) -> None:
    n = store.records
    # memories: hash for hash, and every stored column, against the clean migration
    assert len(got["memories"]) == n, f"{len(got['memories'])} memory rows, expected {n}"
    assert len({r[0] for r in got["memories"]}) == n, "duplicate source ids"
    assert {r[0]: r[1] for r in got["memories"]} == {r[0]: r[1] for r in ref["memories"]}
    assert {r[0]: r[2] for r in got["memories"]} == {r[0]: r[2] for r in ref["memories"]}
    # traces: the same rows, each with a task embedding equal to the clean run's
    assert len(got["traces"]) == store.traces == len(ref["traces"])
    assert {r[0]: r[1:3] for r in got["traces"]} == {r[0]: r[1:3] for r in ref["traces"]}
    missing = [r[0] for r in got["traces"] if r[3] is None]
    assert not missing, f"{len(missing)} traces lack task_embedding, e.g. {missing[:3]}"
    ref_emb = {r[0]: r[3] for r in ref["traces"]}
    worst = max(float(np.abs(vec(r[3]) - vec(ref_emb[r[0]])).max()) for r in got["traces"])
    assert worst < 1e-4, f"task embeddings differ from the clean run's by up to {worst}"
    # indexes: the same set as after a clean run, every one valid; both HNSW among them
    invalid = [name for name, ok, _am in got["indexes"] if not ok]
    assert not invalid, f"invalid indexes left behind: {invalid}"
    assert {r[0] for r in got["indexes"] if r[2] == "hnsw"} == HNSW
    assert sorted((r[0], r[2]) for r in got["indexes"]) == sorted(
        (r[0], r[2]) for r in ref["indexes"]
    )
    # runs: the last one finished ok; each one's counts reconcile; inserts add up to the rows
    runs = got["runs"]
    assert runs and runs[-1][1] == "ok", [r[:3] for r in runs]
    assert all(not r[4] for r in runs), "deferred indexes never built: " + str(runs)
    inserted = traces_inserted = 0
    for run_id, status, _phase, counts, _deferred in runs:
        if status != "ok" and not counts:
            continue
        c = counts
        assert c["source_records"] == n, (run_id, c)
        assert c["inserted"] + c["updated"] + c["unchanged"] + c["rejected"] + c["skipped"] == n, (
            run_id,
            c,
        )
        assert c["updated"] == 0 and c["rejected"] == 0, (run_id, c)  # the source never changed
        inserted += c["inserted"]
        traces_inserted += c["traces_inserted"]
    final = runs[-1][3]
    assert final["inserted"] + final["updated"] + final["unchanged"] + final["rejected"] == n
    assert inserted == n, f"runs report {inserted} inserts for {n} rows"
    assert traces_inserted == store.traces, (traces_inserted, store.traces)


# --- the torture -------------------------------------------------------------------------


def torture_seed(default: int) -> int:
    raw = os.environ.get("RBM_TORTURE_SEED", "")
    if raw == "random":
        return random.SystemRandom().randrange(1, 2**31)
    return int(raw) if raw else default


def reference(store: Store, pg: PgServer, tmp: Path) -> tuple[dict[str, Any], dict[str, float]]:
    """A clean, uninterrupted migration into its own database: the expected end state, and
    how long each phase takes on this machine (kill delays scale with it)."""
    name = f"ref_{uuid.uuid4().hex[:10]}"
    pg.create_database(name)
    try:
        data = tmp / "ref-data"
        data.mkdir()
        proc = spawn(store.path, pg.url(name), data)
        watcher = Watcher(proc)
        rc = proc.wait(600)
        watcher.join()
        assert rc == 0, watcher.text()[-4000:]
        return snapshot_target(pg.url(name)), watcher.durations()
    finally:
        pg.drop_database(name)


def kill_once(
    point: KillPoint,
    store: Store,
    db_url: str,
    data_dir: Path,
    durations: dict[str, float],
    *,
    first: bool,
) -> Kill:
    proc = spawn(store.path, db_url, data_dir, *([] if first else ["--resume"]))
    watcher = Watcher(proc)
    phase = "prepare" if point.marker == ("done", "traces") else point.marker[1]
    delay = point.fraction * durations.get(phase, 0.5)
    try:
        assert watcher.wait_until(point.reached, timeout=300), "no progress for 300s"
        armed = time.monotonic()
        watcher.wait_until(point.passed, timeout=delay)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        delay = time.monotonic() - armed  # shorter when the aimed phase ended first
        rc = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(60)
    watcher.join()  # everything the process printed before it died: its last phase
    if os.environ.get("RBM_TORTURE_DEBUG"):
        print(watcher.text())
    if rc not in (0, -signal.SIGKILL):
        pytest.fail(f"run exited with {rc} instead of being killed:\n{watcher.text()[-4000:]}")
    if "resuming unfinished run" in watcher.text():
        # the schema is there; a resumed initial load must keep its HNSW indexes deferred
        assert "-> bootstrap" not in watcher.text(), watcher.text()[-4000:]
    rows, traces = assert_whole_batches(db_url, store.records)
    state = watcher.state() if rc else "completed"
    if state == "verify done" and latest_run(db_url)[0] == "ok":
        state = "completed"  # killed after the run recorded its end: not a crash
    return Kill(point, round(delay, 3), state, rows, traces)


def latest_run(db_url: str) -> tuple[str | None, str | None]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('rbmigrate_runs')").fetchone()[0] is None:
            return None, None
        row = conn.execute(
            "SELECT status, phase FROM rbmigrate_runs ORDER BY started_at DESC LIMIT 1"
        ).fetchone()
    return (row[0], row[1]) if row else (None, None)


def torture(
    store: Store, pg: PgServer, db_url: str, data_dir: Path, tmp: Path, kills: int, seed: int
) -> list[Kill]:
    print(f"\ncrash torture: seed {seed} (replay with RBM_TORTURE_SEED={seed}), {kills} kills")
    before = tree_state(store.path)
    ref, durations = reference(store, pg, tmp)
    print("reference phase times: " + ", ".join(f"{k} {v:.2f}s" for k, v in durations.items()))
    done: list[Kill] = []
    for point in plan_kills(random.Random(seed), kills):
        kill = kill_once(point, store, db_url, data_dir, durations, first=not done)
        done.append(kill)
        print(
            f"  kill {len(done):2}: aimed at {point.target:9} (after {point.marker[0]} of "
            f"{point.marker[1]} + {kill.delay:.2f}s) -> died in {kill.state!r}; "
            f"{kill.rows} memories, {kill.traces} traces committed"
        )
    final = run_cli(migrate_args(store.path, db_url, "--resume", "--deep", "--json"), data_dir)
    assert final.code == 0, final.err[-4000:]
    report = final.json()
    assert report["verify"]["ok"], report["verify"]
    assert report["verify"]["vectors_compared"] == store.records, report["verify"]
    assert_equals_reference(snapshot_target(db_url), ref, store)
    assert tree_state(store.path) == before, "the source directory changed"
    return done


@pytest.fixture(scope="module")
def small_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    return build_store(tmp_path_factory.mktemp("torture-small") / "store", 4000)


@pytest.fixture(scope="module")
def big_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    return build_store(tmp_path_factory.mktemp("torture-big") / "store", 20000)


def test_plan_kills_covers_the_phases_in_run_order():
    for seed in range(50):
        points = plan_kills(random.Random(seed), 20)
        assert len(points) == 20
        targets = [p.target for p in points]
        assert {"read/plan", "write", "embed", "index", "verify"} <= set(targets)
        later = [t for t in targets if t != "read/plan"]
        order = ["write", "embed", "index", "verify"]
        assert later == sorted(later, key=order.index), later
    assert plan_kills(random.Random(3), 20) == plan_kills(random.Random(3), 20)


def test_three_kills_small_store(
    small_store: Store, pg: PgServer, db_url: str, data_dir: Path, tmp_path: Path
):
    """The torture's logic on every CI run: 3 kills in different phases of a 4,000-record load."""
    kills = torture(small_store, pg, db_url, data_dir, tmp_path, 3, torture_seed(8))
    killed = [k for k in kills if k.state != "completed"]
    assert len(killed) == 3, [k.state for k in kills]
    assert len({k.phase for k in killed}) >= 2, [k.state for k in kills]


@pytest.mark.long
def test_twenty_kills_big_store(
    big_store: Store, pg: PgServer, db_url: str, data_dir: Path, tmp_path: Path
):
    """20 SIGKILLs of a 20,000-record initial load, spread over read/plan, COPY+merge batches,
    the task-embedding fill, the deferred HNSW build and verify; then one clean resume."""
    kills = torture(big_store, pg, db_url, data_dir, tmp_path, 20, torture_seed(20261124))
    hit = Counter(k.phase for k in kills if k.state != "completed")
    print("phases hit: " + ", ".join(f"{p} x{n}" for p, n in hit.most_common()))
    assert sum(hit.values()) == 20, [k.state for k in kills]
    assert len(hit) >= 4, hit
