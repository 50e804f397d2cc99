"""Hostile input: every record of a corpus of bad records ends inserted or rejected with a code,
and a damaged store fails with a clear message before anything is written.

The corpus here adds to tests/support/cases.py (one record per DESIGN §4 rule) the kinds of
damage real stores and attackers bring: deep nesting, huge documents, invalid UTF-8 in the
SQLite rows, every metadata type, ids built to break SQL and shells, and so on.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support.cli import run_cli
from tests.support.stores import item, rb_metadata, tree_state, write_store

T = "cccccccc-0000-4000-8000-000000000001"
T_UTF8 = "cccccccc-0000-4000-8000-000000000002"
DOC = "Title\nDesc\nContent"


def uid(n: int) -> str:
    return f"dddddddd-0000-4000-8000-{n:012d}"


def nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = {"k": value}
    return value


def hostile() -> list[tuple[str, str | None, dict[str, Any] | None, str]]:
    """(id, document, metadata, what it is). Each line is one kind of bad record."""
    big = "x" * (10 * 1024 * 1024)
    rows: list[tuple[str, str | None, dict[str, Any] | None, str]] = [
        (
            uid(1),
            DOC,
            rb_metadata(trace_id=T, item=item(uid(1), error_context=nested(200))),
            "json nested 200 deep",
        ),
        (
            uid(2),
            f"Big\nd\n{big}",
            rb_metadata(trace_id=T, item=item(uid(2), content=big)),
            "10 MB document",
        ),
        (
            "'; DROP TABLE memory_items; --",
            DOC,
            rb_metadata(trace_id=T, item=item("x")),
            "SQL in the id",
        ),
        (
            "$(rm -rf /tmp/x) `id` | tee",
            DOC,
            rb_metadata(trace_id=T, item=item("y")),
            "shell in the id",
        ),
        ("../../etc/passwd", DOC, rb_metadata(trace_id=T, item=item("z")), "path in the id"),
        ("i" * 5000, DOC, rb_metadata(trace_id=T, item=item("long")), "5,000-character id"),
        (
            "😀 emoji id ‮",
            DOC,
            rb_metadata(trace_id=T, item=item("e")),
            "emoji and RTL override in the id",
        ),
        (
            uid(8),
            DOC,
            rb_metadata(trace_id="'); DELETE FROM reasoning_traces; --", item=item(uid(8))),
            "SQL in the trace id",
        ),
        (
            uid(9),
            DOC,
            rb_metadata(
                trace_id=T,
                item=item(uid(9)),
                extra={"n_int": 7, "n_float": 2.5, "flag": False, "s": "x"},
            ),
            "every scalar type",
        ),
        (
            uid(10),
            DOC,
            rb_metadata(
                trace_id=T, item=item(uid(10)), extra={"weird key \"'.;": "v", "ключ": "значение"}
            ),
            "odd metadata keys",
        ),
        (
            uid(11),
            DOC,
            rb_metadata(trace_id=T, workspace_id=12345, item=item(uid(11))),
            "workspace as a number",
        ),
        (
            uid(12),
            DOC,
            rb_metadata(trace_id=T, item=item(uid(12), pattern_tags=[1, None, "ok", 2.5])),
            "tags of mixed types",
        ),
        (
            uid(13),
            DOC,
            rb_metadata(trace_id=T, item=item(uid(13), evolution_stage="2.5")),
            "stage as a float string",
        ),
        (
            uid(14),
            DOC,
            rb_metadata(trace_id=T, timestamp="9999-12-31T23:59:59", item=item(uid(14))),
            "far-future time",
        ),
        (
            uid(15),
            DOC,
            rb_metadata(trace_id=T, timestamp="0001-01-01T00:00:00", item=item(uid(15))),
            "year one",
        ),
        (
            uid(16),
            DOC,
            rb_metadata(trace_id=T, timestamp="2025-03-01T10:00:00+05:30", item=item(uid(16))),
            "time with an offset",
        ),
        (
            uid(17),
            DOC,
            rb_metadata(trace_id=T, item=item(uid(17), error_context="just a string")),
            "error context as text",
        ),
        (
            uid(18),
            DOC,
            rb_metadata(trace_id=T, item=json.dumps([1, 2, 3])),
            "memory_data is a list",
        ),
        (uid(19), DOC, rb_metadata(trace_id=T, item="null"), "memory_data is null"),
        (uid(20), None, rb_metadata(trace_id=T, item=item(uid(20))), "no document"),
        (
            uid(21),
            DOC,
            rb_metadata(
                trace_id=T, item=item(uid(21), pattern_tags=[f"t{i}" for i in range(10000)])
            ),
            "10,000 tags",
        ),
        (
            uid(22),
            DOC,
            rb_metadata(trace_id=T, item=item(uid(22), parent_memory_id=uid(22))),
            "its own parent",
        ),
        (
            uid(23),
            "\u200b\u200b\n\u200b\n\u200b",
            rb_metadata(trace_id=T, item=item(uid(23), title="\u200b", content="\u200b")),
            "zero-width text only",
        ),
        (uid(24), DOC, rb_metadata(trace_id=T, outcome="", item=item(uid(24))), "empty outcome"),
        (
            uid(25),
            DOC,
            rb_metadata(trace_id=T, outcome="SUCCESS\n", item=item(uid(25))),
            "outcome with newline",
        ),
        (
            uid(26),
            DOC,
            rb_metadata(trace_id=T, item=item(uid(26), difficulty_level=None, domain_category=7)),
            "domain as a number",
        ),
        (
            uid(27),
            DOC,
            rb_metadata(trace_id=T, task="t" * 100000, item=item(uid(27))),
            "100,000-character task",
        ),
        (
            uid(28),
            DOC,
            rb_metadata(
                trace_id=T, item='{"title": "a", "content": "b", "x": NaN, "y": -Infinity}'
            ),
            "NaN and Infinity tokens in JSON",
        ),
        (
            uid(29),
            DOC,
            rb_metadata(trace_id=T, item=item(uid(29), created_at=12345)),
            "created_at as a number",
        ),
        (uid(30), DOC, rb_metadata(trace_id=T, item=item(uid(30), id=None)), "memory_data id null"),
        (uid(31), DOC, None, "no metadata at all"),
        (
            uid(32),
            DOC,
            rb_metadata(trace_id=T, item=item(uid(32), title="<script>alert(1)</script>")),
            "markup in text",
        ),
    ]
    return rows


INVALID_UTF8_ID = uid(40)


@pytest.fixture(scope="module")
def hostile_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("hostile") / "store"
    rows = [(rid, doc, meta, None) for rid, doc, meta, _what in hostile()]
    rows.append(
        (INVALID_UTF8_ID, DOC, rb_metadata(trace_id=T_UTF8, item=item(INVALID_UTF8_ID)), None)
    )
    write_store(path, rows)
    # the same id in a second ReasoningBank collection (a UUID: both map to one target id)
    write_store(
        path,
        [(uid(9), DOC, rb_metadata(trace_id=T, item=item(uid(9))), None)],
        collection="rb_copy",
    )
    # invalid UTF-8 written straight into the SQLite row, as a damaged or foreign writer leaves it
    db = sqlite3.connect(path / "chroma.sqlite3")
    try:
        changed = db.execute(
            "UPDATE embedding_metadata SET string_value = CAST(? AS TEXT) WHERE key = 'task' AND id = "
            "(SELECT e.id FROM embeddings e WHERE e.embedding_id = ?)",
            (b"bad \xff\xfe bytes \xc3", INVALID_UTF8_ID),
        ).rowcount
        db.commit()
    finally:
        db.close()
    assert changed == 1
    return path


KINDS = len(hostile()) + 2  # + invalid UTF-8 in SQLite, + a duplicate id across collections


def test_every_hostile_record_is_inserted_or_rejected_with_a_code(
    hostile_store: Path, db_url: str, data_dir: Path
):
    assert KINDS >= 30
    before = tree_state(hostile_store)
    res = run_cli(
        [
            *("--headless", "--chroma-path", str(hostile_store), "--db-url", db_url),
            *("--max-rejects", "-1", "--json"),
            *("--collection", "reasoning_memories", "--collection", "rb_copy"),
        ],
        data_dir,
        timeout=600,
    )
    assert "Traceback" not in res.err
    report = res.json()
    assert res.code == 0, (report.get("error"), res.err[-2000:])
    c = report["counts"]
    total = len(hostile()) + 2
    assert c["source_records"] == total
    assert c["inserted"] + c["rejected"] == total and c["skipped"] == 0
    assert sum(report["rejects_by_code"].values()) == c["rejected"]
    assert report["rejects_by_code"].get("json_too_deep") == 1
    assert report["rejects_by_code"].get("duplicate_id") == 1
    assert report["verify"]["ok"]
    assert tree_state(hostile_store) == before
    with psycopg.connect(db_url) as conn:
        ids = {r[0] for r in conn.execute("SELECT source_id FROM memory_items")}
        assert "'; DROP TABLE memory_items; --" in ids and "$(rm -rf /tmp/x) `id` | tee" in ids
        size = conn.execute(
            "SELECT octet_length(content) FROM memory_items WHERE source_id = %s", (uid(2),)
        ).fetchone()
        assert size == (10 * 1024 * 1024,)
        task = conn.execute(
            "SELECT t.task FROM reasoning_traces t JOIN memory_items m ON m.trace_id = t.id "
            "WHERE m.source_id = %s",
            (INVALID_UTF8_ID,),
        ).fetchone()
        assert task is not None and "\ufffd" in task[0]


def damaged_copies(base: Path, tmp: Path) -> dict[str, Path]:
    import shutil

    out: dict[str, Path] = {}
    corrupt = tmp / "corrupt-sqlite"
    shutil.copytree(base, corrupt)
    db = corrupt / "chroma.sqlite3"
    data = bytearray(db.read_bytes())
    data[4096:8192] = b"\x00garbage" * 512  # a damaged page in the middle of the file
    db.write_bytes(bytes(data))
    out["corrupt chroma.sqlite3"] = corrupt
    truncated = tmp / "truncated-hnsw"
    shutil.copytree(base, truncated)
    for f in truncated.rglob("data_level0.bin"):
        f.write_bytes(f.read_bytes()[:100])
    out["truncated HNSW file"] = truncated
    empty = tmp / "empty"
    empty.mkdir()
    out["empty directory"] = empty
    return out


def test_a_damaged_store_fails_clearly_before_anything_is_written(
    tmp_path: Path, db_url: str, data_dir: Path
):
    base = tmp_path / "base"
    write_store(
        base,
        [
            (uid(100 + i), DOC, rb_metadata(trace_id=T, item=item(uid(100 + i))), None)
            for i in range(1200)
        ],
    )
    for what, path in damaged_copies(base, tmp_path).items():
        before = tree_state(path)
        res = run_cli(
            ["--headless", "--chroma-path", str(path), "--db-url", db_url], data_dir, timeout=300
        )
        assert res.code in (2, 3, 4), (what, res.code, res.err[-1500:])
        assert "Traceback" not in res.err, what
        assert tree_state(path) == before, what
        with psycopg.connect(db_url) as conn:
            exists = conn.execute(
                "SELECT to_regclass('public.memory_items') IS NOT NULL"
            ).fetchone()
            rows = (
                conn.execute("SELECT count(*) FROM memory_items").fetchone()
                if exists and exists[0]
                else (0,)
            )
        assert rows == (0,), what
