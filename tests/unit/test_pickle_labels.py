"""The streaming reader of Chroma's index_metadata.pickle: same pairs as pickle, no code run."""

from __future__ import annotations

import io
import pickle
import sys
import types

import pytest

from rbmigrate.source.pickle_labels import UnsupportedPickle, stream_id_labels


def pairs(data: bytes) -> dict[str, int]:
    out: dict[str, int] = {}
    stream_id_labels(io.BytesIO(data), lambda k, v: out.__setitem__(k, v))
    return out


def mapping(n: int) -> dict[str, int]:
    return {f"id-{i}": i + 1 for i in range(n)}


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_plain_dict_as_chromadb_1x_writes_it(protocol):
    m = mapping(2500)  # more than one SETITEMS batch
    blob = pickle.dumps(
        {
            "dimensionality": 384,
            "total_elements_added": 2500,
            "max_seq_id": None,
            "id_to_label": m,
            "label_to_id": {v: k for k, v in m.items()},
            "id_to_seq_id": {},
        },
        protocol=protocol,
    )
    assert pairs(blob) == m


@pytest.mark.parametrize("protocol", [2, 4])
def test_persistent_data_object_as_chromadb_0x_writes_it(protocol):
    module = types.ModuleType("chromadb.segment.impl.vector.local_persistent_hnsw_fake")

    class PersistentData:
        pass

    PersistentData.__module__ = module.__name__
    PersistentData.__qualname__ = "PersistentData"
    module.PersistentData = PersistentData  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module
    try:
        obj = PersistentData()
        m = mapping(1200)
        obj.dimensionality = 384
        obj.id_to_label = m
        obj.label_to_id = {v: k for k, v in m.items()}
        obj.id_to_seq_id = {k: 1 for k in m}
        blob = pickle.dumps(obj, protocol=protocol)
    finally:
        del sys.modules[module.__name__]
    assert pairs(blob) == m


def test_code_execution_opcodes_are_refused_not_run():
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    blob = pickle.dumps({"id_to_label": {"a": 1}, "x": Evil()}, protocol=2)
    # REDUCE is only ever a placeholder here: nothing is called, the labels still come out
    assert pairs(blob) == {"a": 1}


def test_wrong_value_types_are_refused():
    with pytest.raises(UnsupportedPickle):
        pairs(pickle.dumps({"id_to_label": {"a": "not-an-int"}}, protocol=3))


@pytest.mark.parametrize("protocol", [2, 5])
def test_a_truncated_file_is_damaged_at_every_cut(tmp_path, protocol):
    from rbmigrate.source.pickle_labels import read_id_labels

    blob = pickle.dumps({"id_to_label": mapping(40), "label_to_id": {}}, protocol=protocol)
    path = tmp_path / "index_metadata.pickle"
    for cut in range(len(blob)):
        path.write_bytes(blob[:cut])
        with pytest.raises(UnsupportedPickle, match=r"damaged|STOP|unbalanced"):
            read_id_labels(path, lambda k, v: None)
