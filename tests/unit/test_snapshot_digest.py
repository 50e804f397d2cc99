"""The snapshot's digest: equal for the same bytes, different after any change to any file.

A re-run trusts it to say the source is the one an earlier run read (engine.unchanged)."""

from __future__ import annotations

from pathlib import Path

from rbmigrate.source.snapshot import take_snapshot
from tests.support.stores import item, rb_metadata, write_store


def _store(path: Path) -> Path:
    rows = [(f"m{i}", f"T{i}\nD\nC", rb_metadata(item=item(f"m{i}")), None) for i in range(30)]
    return write_store(path, rows, dim=8)


def test_two_snapshots_of_the_same_store_have_one_digest(tmp_path):
    store = _store(tmp_path / "store")
    first = take_snapshot(store, tmp_path / "a")
    second = take_snapshot(store, tmp_path / "b")
    assert len(first.digest) == 64 and first.digest == second.digest


def test_a_changed_byte_in_a_segment_file_changes_the_digest(tmp_path):
    store = _store(tmp_path / "store")
    before = take_snapshot(store, tmp_path / "a").digest
    segment = max((p for p in store.rglob("*.bin")), key=lambda p: p.stat().st_size)
    data = bytearray(segment.read_bytes())
    data[len(data) // 2] ^= 1
    segment.write_bytes(bytes(data))
    assert take_snapshot(store, tmp_path / "b").digest != before


def test_a_new_file_changes_the_digest(tmp_path):
    store = _store(tmp_path / "store")
    before = take_snapshot(store, tmp_path / "a").digest
    (store / "traces.json").write_text("[]")
    assert take_snapshot(store, tmp_path / "b").digest != before
