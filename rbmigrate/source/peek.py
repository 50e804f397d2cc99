"""Collection dimensions without a snapshot: enough to render the schema for a bootstrap.

Reads chroma.sqlite3 through a read-only SQLite connection (never chromadb), or asks a
Chroma server. Returns {} when no source is configured.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from rbmigrate.config import Config
from rbmigrate.errors import SourceError
from rbmigrate.source.base import CollectionInfo
from rbmigrate.source.formats import check_store_dir
from rbmigrate.source.snapshot import open_readonly


def _server_collections(cfg: Config) -> list[CollectionInfo]:
    from rbmigrate.source.chroma_api import ChromaApiReader

    s = cfg.source
    reader = ChromaApiReader.http(s.chroma_url, tenant=s.chroma_tenant, database=s.chroma_database)
    try:
        return reader.collections()
    finally:
        reader.close()


def _store_rows(cfg: Config, query: str, failure: str) -> list[Any]:
    """(name, value) rows of one query on chroma.sqlite3, opened read-only."""
    db = check_store_dir(Path(cfg.source.chroma_path).expanduser())
    conn = open_readonly(db)
    try:
        return conn.execute(query).fetchall()
    except sqlite3.DatabaseError as exc:
        raise SourceError(f"{failure.format(db=db)}: {exc}.", title="Corrupted store") from None
    finally:
        conn.close()


def peek_dimensions(cfg: Config) -> dict[str, int | None]:
    wanted = set(cfg.source.collections)
    if cfg.source.chroma_url:
        rows = [(c.name, c.dimension) for c in _server_collections(cfg)]
    elif cfg.source.chroma_path:
        rows = _store_rows(cfg, "SELECT name, dimension FROM collections", "{db} cannot be read")
    else:
        return {}
    return {name: dim for name, dim in rows if not wanted or name in wanted}


def peek_counts(cfg: Config) -> dict[str, int]:
    """Records per collection, read the same read-only way (for doctor's estimate)."""
    wanted = set(cfg.source.collections)
    if cfg.source.chroma_url:
        rows = [(c.name, c.count) for c in _server_collections(cfg)]
    elif cfg.source.chroma_path:
        rows = _store_rows(
            cfg,
            "SELECT c.name, count(e.id) FROM collections c "
            "LEFT JOIN segments g ON g.collection = c.id AND g.scope = 'METADATA' "
            "LEFT JOIN embeddings e ON e.segment_id = g.id GROUP BY c.name",
            "cannot count the records",
        )
    else:
        return {}
    return {name: int(n) for name, n in rows if not wanted or name in wanted}
