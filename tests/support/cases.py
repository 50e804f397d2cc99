"""A store holding one record for every rule of DESIGN §4, and what the plan must say of it."""

from __future__ import annotations

import json
import sqlite3
import struct
from pathlib import Path

from tests.support.stores import item, rb_metadata, write_store

T1 = "aaaaaaaa-0000-4000-8000-000000000001"
T2 = "aaaaaaaa-0000-4000-8000-000000000002"


def uid(n: int) -> str:
    return f"bbbbbbbb-0000-4000-8000-{n:012d}"


# (id, document, metadata, expected category, expected code or None)
def cases() -> list[tuple[str, str | None, dict | None, str, str | None]]:
    doc = "Title\nDesc\nContent"
    c: list[tuple[str, str | None, dict | None, str, str | None]] = [
        (uid(1), doc, rb_metadata(trace_id=T1, item=item(uid(1))), "new", None),
        (
            "legacy-memory-7",
            doc,
            rb_metadata(trace_id=T1, item=item("legacy-memory-7")),
            "new",
            "non_uuid_id",
        ),
        (
            uid(3),
            doc,
            rb_metadata(trace_id="trace-abc", item=item(uid(3))),
            "new",
            "non_uuid_trace_id",
        ),
        (
            uid(4),
            doc,
            {k: v for k, v in rb_metadata(item=item(uid(4))).items() if k != "trace_id"},
            "new",
            "missing_trace_id",
        ),
        (
            uid(5),
            "Ti\x00tle\nDesc\nContent",
            rb_metadata(trace_id=T1, item=item(uid(5), title="Ti\x00tle")),
            "new",
            "nul_removed",
        ),
        (
            uid(6),
            doc,
            rb_metadata(
                trace_id=T1,
                item=f'{{"id": "{uid(6)}", "title": "bad \\ud800", "description": "d",'
                ' "content": "c"}',
            ),
            "new",
            "lone_surrogate",
        ),
        (
            uid(7),
            doc,
            rb_metadata(
                trace_id=T1,
                item=f'{{"id": "{uid(7)}", "title": "Title", "description": "Desc",'
                ' "content": "Content", "error_context": {"score": NaN}}',
            ),
            "new",
            "non_finite_json",
        ),
        (
            uid(8),
            "Recovered title\nRecovered desc\nRecovered body",
            rb_metadata(trace_id=T1),
            "new",
            "memory_data_missing",
        ),
        (uid(9), doc, rb_metadata(trace_id=T1, item="{not json"), "new", "memory_data_invalid"),
        (
            uid(10),
            doc,
            rb_metadata(trace_id=T2, outcome=" Success ", item=item(uid(10))),
            "new",
            None,
        ),
        (
            uid(11),
            doc,
            rb_metadata(trace_id=T2, outcome="won", item=item(uid(11))),
            "invalid",
            "invalid_outcome",
        ),
        (
            uid(12),
            doc,
            rb_metadata(trace_id=T2, item=item(uid(12), difficulty_level="legendary")),
            "new",
            "invalid_difficulty",
        ),
        (
            uid(13),
            doc,
            rb_metadata(trace_id=T2, item=item(uid(13))),
            "invalid",
            "non_finite_embedding",
        ),
        (uid(14), doc, rb_metadata(trace_id=T2, item=item(uid(14))), "new", "zero_vector"),
        (
            uid(15),
            doc,
            rb_metadata(trace_id=T2, item=item(uid(15))),
            "invalid",
            "missing_embedding",
        ),
        (
            uid(16),
            doc,
            rb_metadata(trace_id=T2, item=item(uid(16), created_at="someday")),
            "new",
            "unparsable_timestamp",
        ),
        (
            uid(17),
            doc,
            rb_metadata(trace_id=T2, item=item(uid(17), parent_memory_id=uid(999))),
            "new",
            "parent_not_found",
        ),
        # a child stored before its parent: no warning, the link resolves
        (
            uid(18),
            doc,
            rb_metadata(trace_id=T2, item=item(uid(18), parent_memory_id=uid(19))),
            "new",
            None,
        ),
        (uid(19), doc, rb_metadata(trace_id=T2, item=item(uid(19))), "new", None),
        (uid(20), doc, rb_metadata(trace_id=T2, workspace_id="", item=item(uid(20))), "new", None),
        (
            uid(21),
            doc,
            rb_metadata(trace_id=T2, item=item(uid(21), pattern_tags="a, b")),
            "new",
            "pattern_tags_string",
        ),
        (
            uid(22),
            doc,
            rb_metadata(trace_id=T2, item=item("something-else")),
            "new",
            "memory_id_mismatch",
        ),
        (
            uid(23),
            "a different document",
            rb_metadata(trace_id=T2, item=item(uid(23)), extra={"agent": "x"}),
            "new",
            "document_mismatch",
        ),
        (uid(24).upper(), doc, rb_metadata(trace_id=T2, item=item(uid(24).upper())), "new", None),
        # the same UUID again, in lower case: one target id, so the second is a duplicate
        (uid(24), doc, rb_metadata(trace_id=T2, item=item(uid(24))), "invalid", "duplicate_id"),
        (
            uid(25),
            doc,
            rb_metadata(trace_id=T2, workspace_id="fedcba9876543210", item=item(uid(25))),
            "new",
            None,
        ),
    ]
    return c


NAN_ID, MISSING_ID, ZERO_ID = uid(13), uid(15), uid(14)


def write_cases_store(path: Path, *, damage: bool = True) -> Path:
    """With damage=False the NaN and missing vectors are left out: chromadb itself fails on a
    write log without a record's vector ("Error finding id"); only the native reader copes."""
    rows = []
    for rid, doc, meta, _cat, _code in cases():
        vec = [0.0] * 384 if rid == ZERO_ID else None
        rows.append((rid, doc, meta, vec))
    write_store(path, rows)
    if not damage:
        return path
    # chromadb 1.5 refuses NaN vectors and always stores one; older stores and damaged logs do
    # not: patch the write log (records below the sync threshold live there) to make both cases.
    db = sqlite3.connect(path / "chroma.sqlite3")
    try:
        nan_blob = struct.pack("<384f", *([float("nan")] + [0.1] * 383))
        assert (
            db.execute(
                "UPDATE embeddings_queue SET vector = ? WHERE id = ?", (nan_blob, NAN_ID)
            ).rowcount
            == 1
        )
        assert db.execute("DELETE FROM embeddings_queue WHERE id = ?", (MISSING_ID,)).rowcount == 1
        db.commit()
    finally:
        db.close()
    return path


def expected_codes() -> dict[str, int]:
    out: dict[str, int] = {}
    for *_rest, cat, code in cases():
        if code and cat == "new":
            out[code] = out.get(code, 0) + 1
    return out


def dump(value: object) -> str:
    return json.dumps(value, indent=1, default=str)
