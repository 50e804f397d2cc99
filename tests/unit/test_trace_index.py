"""The trace index answers hash and summary questions without decoding rows, and a run
directory written by an older rbmigrate rebuilds its traces instead of misreading them."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from uuid import UUID, uuid4

from rbmigrate.engine.traceindex import TraceIndex
from rbmigrate.records.model import TraceObservation
from rbmigrate.records.normalize import RuleContext


def _observation(trace: UUID, source_id: str, task: str) -> TraceObservation:
    return TraceObservation(
        trace_id=trace,
        raw_trace_id=str(trace),
        synthetic=False,
        task=task,
        outcome="success",
        timestamp=datetime(2025, 1, 2, tzinfo=UTC),
        workspace_id="w",
        collection="reasoning_memories",
        source_id=source_id,
        position=1,
    )


def test_summaries_hashes_and_leftovers(tmp_path):
    index = TraceIndex(tmp_path / "traces.sqlite")
    used, leftover = uuid4(), uuid4()
    obs = _observation(used, "m1", "plan the query")
    index.add([(obs, uuid4())])
    legacy = {leftover: {"task": "old task", "outcome": "failure", "trajectory": []}}
    index.build_traces(RuleContext(), "model", legacy)

    summaries = {s[0]: s for page in index.iter_summaries() for s in page}
    assert set(summaries) == {used, leftover}
    assert summaries[used][2:] == (1, "plan the query")
    assert summaries[leftover][2:] == (0, "old task")
    full = {t.id: t for page in index.iter_traces() for t in page}
    assert index.hashes([used, leftover]) == {k: v.source_hash for k, v in full.items()}
    assert [t.id for page in index.unreferenced() for t in page] == [leftover]
    index.close()


def test_traces_from_an_older_version_are_rebuilt(tmp_path):
    path = tmp_path / "traces.sqlite"
    db = sqlite3.connect(path)
    db.executescript(
        """CREATE TABLE traces (id TEXT PRIMARY KEY, hash TEXT, ts TEXT, row TEXT,
               warnings TEXT) WITHOUT ROWID;
           CREATE TABLE state (key TEXT PRIMARY KEY, value TEXT);
           INSERT INTO traces VALUES ('x', 'h', NULL, '{}', '[]');
           INSERT INTO state VALUES ('traces_built', '1');"""
    )
    db.commit()
    db.close()

    index = TraceIndex(path)
    trace = uuid4()
    index.add([(_observation(trace, "m1", "task"), uuid4())])
    index.build_traces(RuleContext(), "model", {})  # built again, not taken as done
    assert [s[0] for page in index.iter_summaries() for s in page] == [trace]
    index.close()


def test_first_seen_and_tasks_to_embed_shortest_first(tmp_path):
    index = TraceIndex(tmp_path / "traces.sqlite")
    tasks = {uuid4(): t for t in ("a longer task", "short", "mid task", "short")}
    for n, (trace, task) in enumerate(tasks.items()):
        index.add([(_observation(trace, f"m{n}", task), uuid4())])
    index.build_traces(RuleContext(), "model", {})
    ids = list(tasks)

    index.forget_seen()
    assert index.first_seen(ids[:2]) == ids[:2]
    assert set(index.first_seen(ids)) == set(ids[2:])  # the first two were seen already
    index.forget_seen()  # a new pass meets them all again
    assert set(index.first_seen(ids)) == set(ids)

    assert index.mark_to_embed([ids[:1], ids[1:]]) == 4
    chunks = list(index.to_embed(3))
    assert [len(c) for c in chunks] == [3, 1]
    order = [task for chunk in chunks for _tid, task in chunk]
    assert order == ["short", "short", "mid task", "a longer task"]
    assert {tid for chunk in chunks for tid, _task in chunk} == set(ids)
    index.close()
