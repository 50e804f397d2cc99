"""Read a Chroma snapshot straight from its files, in memory that stays flat.

chromadb loads a collection's whole HNSW index into memory on the first `get`, so its memory
grows with the store. This reader answers the same question from the snapshot's files:
records, documents and metadata from the SQLite metadata segment; vectors from the
persisted HNSW segment, or from the write log for records not yet persisted there, replayed
as chromadb would (ADD only if absent, UPDATE only if present, UPSERT, DELETE). It works
only on formats it knows (`formats.KNOWN_FORMATS`); anything else falls back to chromadb.
Equivalence with chromadb's own `get` is a test (tests/integration/test_readers_agree.py).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from rbmigrate.errors import SourceError
from rbmigrate.records.model import SourceRecord, Vector
from rbmigrate.source.base import CollectionInfo, classify_layout, space_of
from rbmigrate.source.formats import read_format
from rbmigrate.source.hnsw_files import HnswFormatError, HnswVectors
from rbmigrate.source.pickle_labels import UnsupportedPickle, read_id_labels
from rbmigrate.source.snapshot import open_readonly

ADD, UPDATE, UPSERT, DELETE = 0, 1, 2, 3
DOCUMENT_KEY = "chroma:document"
LAYOUT_SAMPLE = 50


class NativeUnsupported(Exception):
    """This store holds something the native reader does not understand."""


def _seq(value: Any) -> int | None:
    """Chroma 0.x stored sequence ids as 8-byte big-endian blobs, 1.x as integers."""
    if value is None:
        return None
    if isinstance(value, bytes | bytearray | memoryview):
        return int.from_bytes(bytes(value), "big")
    return int(value)


def _find_space(config: Any) -> str | None:
    """The distance space inside a collection configuration, wherever this version put it."""
    if isinstance(config, dict):
        keys = config.get("keys")
        if isinstance(keys, dict) and "#embedding" in keys:
            found = _find_space(keys["#embedding"])
            if found:
                return found
        for key, value in config.items():
            if key == "space" and value in ("l2", "ip", "cosine"):
                return str(value)
            found = _find_space(value)
            if found:
                return found
    return None


def _decode_value(row: tuple[Any, ...]) -> Any:
    string_value, int_value, float_value, bool_value = row
    if string_value is not None:
        return string_value
    if bool_value is not None:
        return bool(bool_value)
    if int_value is not None:
        return int(int_value)
    if float_value is not None:
        return float(float_value)
    return None


def _decode_vector(blob: bytes, encoding: str | None) -> Vector:
    if encoding not in (None, "FLOAT32", "INT32"):
        raise NativeUnsupported(f"vector encoding {encoding!r}")
    return np.frombuffer(blob, dtype="<f4").astype(np.float32)


class NativeReader:
    kind = "persistent"

    def __init__(
        self,
        snapshot: Path,
        scratch: Path,
        tenant: str = "default_tenant",
        database: str = "default_database",
    ) -> None:
        self.snapshot = snapshot
        self.scratch = scratch
        self.db = open_readonly(snapshot / "chroma.sqlite3")
        self.format = read_format(self.db, str(snapshot / "chroma.sqlite3"))
        if not self.format.native:
            self.db.close()
            raise NativeUnsupported(f"on-disk format {self.format.label}")
        tables = {
            r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        self.has_arrays = "embedding_metadata_array" in tables
        cols = {r[1] for r in self.db.execute("PRAGMA table_info(embedding_metadata)")}
        self.bool_col = "bool_value" if "bool_value" in cols else "NULL"
        self.tenant, self.database = tenant, database
        self._segments: dict[str, dict[str, str]] = {}
        self._vectors: dict[str, tuple[sqlite3.Connection, HnswVectors | None]] = {}

    # --- discovery --------------------------------------------------------------------
    def _max_seq(self, segment_id: str) -> int | None:
        row = self.db.execute(
            "SELECT seq_id FROM max_seq_id WHERE segment_id = ?", (segment_id,)
        ).fetchone()
        return _seq(row[0]) if row else None

    def _topic_max(self, collection_id: str) -> int | None:
        row = self.db.execute(
            "SELECT max(seq_id) FROM embeddings_queue WHERE topic LIKE ?", (f"%/{collection_id}",)
        ).fetchone()
        return row[0] if row else None

    def collections(self) -> list[CollectionInfo]:
        rows = self.db.execute(
            """SELECT c.id, c.name, c.dimension, c.config_json_str FROM collections c
               JOIN databases d ON d.id = c.database_id
               WHERE d.name = ? AND d.tenant_id = ? ORDER BY c.name""",
            (self.database, self.tenant),
        ).fetchall()
        has_schema = "schema_str" in {
            r[1] for r in self.db.execute("PRAGMA table_info(collections)")
        }
        out: list[CollectionInfo] = []
        for cid, name, dimension, config_text in rows:
            meta = {
                key: _decode_value((s, i, f, b))
                for key, s, i, f, b in self.db.execute(
                    "SELECT key, str_value, int_value, float_value, bool_value FROM collection_metadata"
                    " WHERE collection_id = ?",
                    (cid,),
                )
            }
            configured = None
            for text in (config_text, self._schema_text(cid) if has_schema else None):
                try:
                    configured = configured or _find_space(json.loads(text or "{}"))
                except ValueError:
                    continue
            space, space_source = space_of(meta, configured)
            segs = {
                scope: sid
                for sid, scope in self.db.execute(
                    "SELECT id, scope FROM segments WHERE collection = ?", (cid,)
                )
            }
            self._segments[name] = segs
            meta_seg = segs.get("METADATA")
            if meta_seg is None:
                raise NativeUnsupported(f"collection {name} has no metadata segment")
            last_log = self._topic_max(cid)
            applied = self._max_seq(meta_seg)
            if last_log is not None and (applied is None or last_log > applied):
                raise NativeUnsupported(
                    f"collection {name}: metadata segment is behind the write log"
                )
            count = self.db.execute(
                "SELECT count(*) FROM embeddings WHERE segment_id = ?", (meta_seg,)
            ).fetchone()[0]
            info = CollectionInfo(
                name=name,
                id=cid,
                count=count,
                dimension=dimension,
                space=space,
                space_source=space_source,
                configured_space=configured,
                metadata={k: v for k, v in meta.items() if isinstance(v, str | int | float | bool)},
            )
            samples: list[Mapping[str, Any] | None] = [
                r.metadata
                for r in next(
                    self.pages(info, after=0, with_embeddings=False, page_size=LAYOUT_SAMPLE), []
                )
            ]
            info.layout, info.layout_detail = classify_layout(samples, count)
            out.append(info)
        return out

    def _schema_text(self, cid: str) -> str | None:
        row = self.db.execute("SELECT schema_str FROM collections WHERE id = ?", (cid,)).fetchone()
        return row[0] if row else None

    # --- records ----------------------------------------------------------------------
    def _metadata(
        self, first: int, last: int, keys: tuple[str, ...] | None = None
    ) -> dict[int, dict[str, Any]]:
        out: dict[int, dict[str, Any]] = {}
        only = f" AND key IN ({','.join('?' * len(keys))})" if keys else ""
        for rid, key, s, i, f, b in self.db.execute(
            f"SELECT id, key, string_value, int_value, float_value, {self.bool_col}"
            " FROM embedding_metadata WHERE id BETWEEN ? AND ?" + only,
            (first, last, *(keys or ())),
        ):
            out.setdefault(rid, {})[key] = _decode_value((s, i, f, b))
        if self.has_arrays:
            for rid, key, s, i, f, b in self.db.execute(
                "SELECT id, key, string_value, int_value, float_value, bool_value"
                " FROM embedding_metadata_array WHERE id BETWEEN ? AND ? ORDER BY rowid",
                (first, last),
            ):
                values = out.setdefault(rid, {}).setdefault(key, [])
                if isinstance(values, list):
                    values.append(_decode_value((s, i, f, b)))
        return out

    def pages(
        self,
        collection: CollectionInfo,
        *,
        after: int,
        with_embeddings: bool,
        page_size: int,
        metadata_keys: tuple[str, ...] | None = None,
    ) -> Iterator[list[SourceRecord]]:
        """`metadata_keys` limits the metadata read (and drops documents): the scan needs five keys."""
        if collection.name not in self._segments:
            raise SourceError(f"collection {collection.name!r} is not in this snapshot.")
        meta_seg = self._segments[collection.name]["METADATA"]
        vectors = self._vector_state(collection) if with_embeddings else None
        position = after
        while True:
            rows = self.db.execute(
                "SELECT id, embedding_id FROM embeddings WHERE segment_id = ? AND id > ?"
                " ORDER BY id LIMIT ?",
                (meta_seg, position, page_size),
            ).fetchall()
            if not rows:
                return
            metas = self._metadata(rows[0][0], rows[-1][0], metadata_keys)
            found = self._fetch_vectors(vectors, [r[1] for r in rows]) if vectors else {}
            page: list[SourceRecord] = []
            for rid, eid in rows:
                meta = metas.get(rid) or {}
                doc = meta.pop(DOCUMENT_KEY, None)
                for key in [k for k in meta if k.startswith("chroma:")]:
                    meta.pop(key)
                page.append(
                    SourceRecord(
                        collection=collection.name,
                        id=eid,
                        document=doc if isinstance(doc, str) else None,
                        metadata=meta or None,
                        embedding=found.get(eid),
                        position=rid,
                    )
                )
            position = rows[-1][0]
            yield page

    # --- vectors ----------------------------------------------------------------------
    def _vector_state(self, info: CollectionInfo) -> tuple[sqlite3.Connection, HnswVectors | None]:
        if info.name in self._vectors:
            return self._vectors[info.name]
        seg = self._segments[info.name].get("VECTOR")
        folder = self.snapshot / seg if seg else None
        hnsw: HnswVectors | None = None
        if folder is not None and (folder / "header.bin").exists() and info.dimension:
            try:
                hnsw = HnswVectors(folder, info.dimension, cosine=info.space == "cosine")
            except (HnswFormatError, OSError) as exc:
                raise SourceError(
                    f"the vector index of collection {info.name!r} is damaged: {exc}.",
                    title="Corrupted store",
                    hint="restore the store from a backup; nothing was written anywhere.",
                ) from None
        self.scratch.mkdir(parents=True, exist_ok=True)
        path = self.scratch / f"native-{info.id}.sqlite"
        conn = sqlite3.connect(path, check_same_thread=False)
        conn.text_factory = lambda b: b.decode("utf-8", "surrogateescape")
        conn.execute(
            f"ATTACH DATABASE '{(self.snapshot / 'chroma.sqlite3').resolve().as_uri()}?mode=ro' AS snap"
        )
        done = conn.execute("SELECT name FROM sqlite_master WHERE name = 'ready'").fetchone()
        if not done:
            self._build_index(conn, info, hnsw, folder)
        self._vectors[info.name] = (conn, hnsw)
        return conn, hnsw

    def _build_index(
        self,
        conn: sqlite3.Connection,
        info: CollectionInfo,
        hnsw: HnswVectors | None,
        folder: Path | None,
    ) -> None:
        conn.executescript(
            """DROP TABLE IF EXISTS labels; DROP TABLE IF EXISTS positions; DROP TABLE IF EXISTS logvec;
               CREATE TABLE labels (id TEXT PRIMARY KEY, label INTEGER) WITHOUT ROWID;
               CREATE TABLE positions (label INTEGER PRIMARY KEY, pos INTEGER);
               CREATE TABLE logvec (id TEXT PRIMARY KEY, seq INTEGER) WITHOUT ROWID;"""
        )
        pickle_path = folder / "index_metadata.pickle" if folder else None
        if hnsw is not None and hnsw.header.element_count and pickle_path and pickle_path.exists():
            batch: list[tuple[str, int]] = []

            def emit(key: str, label: int) -> None:
                batch.append((key, label))
                if len(batch) >= 10000:
                    conn.executemany("INSERT OR REPLACE INTO labels VALUES (?, ?)", batch)
                    batch.clear()

            try:
                read_id_labels(pickle_path, emit)
            except UnsupportedPickle as exc:
                raise NativeUnsupported(str(exc)) from None
            conn.executemany("INSERT OR REPLACE INTO labels VALUES (?, ?)", batch)
            chunk: list[tuple[int, int]] = []
            for label, pos in hnsw.iter_labels():
                chunk.append((label, pos))
                if len(chunk) >= 10000:
                    conn.executemany("INSERT OR REPLACE INTO positions VALUES (?, ?)", chunk)
                    chunk.clear()
            conn.executemany("INSERT OR REPLACE INTO positions VALUES (?, ?)", chunk)
        self._replay_log(conn, info)
        conn.execute("CREATE TABLE ready (done INTEGER)")
        conn.commit()

    def _replay_log(self, conn: sqlite3.Connection, info: CollectionInfo) -> None:
        """Apply the write log past the vector segment's position, as chromadb would."""
        seg = self._segments[info.name].get("VECTOR")
        start = self._max_seq(seg) if seg else None
        state: dict[str, tuple[bool, int | None]] = {}
        cursor = self.db.execute(
            "SELECT seq_id, operation, id, vector IS NOT NULL FROM embeddings_queue"
            " WHERE topic LIKE ? AND seq_id > ? ORDER BY seq_id",
            (f"%/{info.id}", -1 if start is None else start),
        )
        for seq, op, eid, has_vector in cursor:
            if eid in state:
                present, chosen = state[eid]
            else:
                present = (
                    conn.execute(
                        "SELECT 1 FROM labels l JOIN positions p ON p.label = l.label WHERE l.id = ?",
                        (eid,),
                    ).fetchone()
                    is not None
                )
                chosen = None
            if op == ADD:
                if not present:
                    present, chosen = True, seq if has_vector else None
            elif op == UPDATE:
                if present and has_vector:
                    chosen = seq
            elif op == UPSERT:
                if has_vector:
                    chosen = seq
                present = True
            elif op == DELETE:
                present, chosen = False, None
            else:
                raise NativeUnsupported(f"write-log operation code {op}")
            state[eid] = (present, chosen)
        conn.executemany(
            "INSERT OR REPLACE INTO logvec VALUES (?, ?)",
            [(eid, seq) for eid, (present, seq) in state.items() if present and seq is not None],
        )

    def _fetch_vectors(
        self, state: tuple[sqlite3.Connection, HnswVectors | None], ids: list[str]
    ) -> dict[str, Vector]:
        conn, hnsw = state
        marks = ",".join("?" * len(ids))
        out: dict[str, Vector] = {}
        from_log: dict[int, str] = {}
        for eid, seq in conn.execute(f"SELECT id, seq FROM logvec WHERE id IN ({marks})", ids):
            from_log[seq] = eid
        if from_log:
            seqs = list(from_log)
            qmarks = ",".join("?" * len(seqs))
            for seq, blob, encoding in conn.execute(
                f"SELECT seq_id, vector, encoding FROM snap.embeddings_queue WHERE seq_id IN ({qmarks})",
                seqs,
            ):
                out[from_log[seq]] = _decode_vector(blob, encoding)
        if hnsw is not None:
            rest = [eid for eid in ids if eid not in out]
            if rest:
                rmarks = ",".join("?" * len(rest))
                rows = conn.execute(
                    f"SELECT l.id, p.pos FROM labels l JOIN positions p ON p.label = l.label"
                    f" WHERE l.id IN ({rmarks}) ORDER BY p.pos",
                    rest,
                ).fetchall()
                for eid, pos in rows:
                    out[eid] = hnsw.vector(pos)
        return out

    def close(self) -> None:
        for conn, hnsw in self._vectors.values():
            conn.close()
            if hnsw is not None:
                hnsw.close()
        self._vectors.clear()
        self.db.close()
