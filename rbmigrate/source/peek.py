"""Collection dimensions without a snapshot: enough to render the schema for a bootstrap.

Reads chroma.sqlite3 through a read-only SQLite connection (never chromadb), or asks a
Chroma server. Returns {} when no source is configured.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from rbmigrate.config import Config
from rbmigrate.errors import SourceError
from rbmigrate.source.formats import check_store_dir
from rbmigrate.source.snapshot import open_readonly


def peek_dimensions(cfg: Config) -> dict[str, int | None]:
    s = cfg.source
    wanted = set(s.collections)
    if s.chroma_url:
        from rbmigrate.source.chroma_api import ChromaApiReader

        reader = ChromaApiReader.http(
            s.chroma_url, tenant=s.chroma_tenant, database=s.chroma_database
        )
        try:
            return {
                c.name: c.dimension for c in reader.collections() if not wanted or c.name in wanted
            }
        finally:
            reader.close()
    if not s.chroma_path:
        return {}
    db = check_store_dir(Path(s.chroma_path).expanduser())
    conn = open_readonly(db)
    try:
        rows = conn.execute("SELECT name, dimension FROM collections").fetchall()
    except sqlite3.DatabaseError as exc:
        raise SourceError(f"{db} cannot be read: {exc}.", title="Corrupted store") from None
    finally:
        conn.close()
    return {name: dim for name, dim in rows if not wanted or name in wanted}


def peek_counts(cfg: Config) -> dict[str, int]:
    """Records per collection, read the same read-only way (for doctor's estimate)."""
    s = cfg.source
    wanted = set(s.collections)
    if s.chroma_url:
        from rbmigrate.source.chroma_api import ChromaApiReader

        reader = ChromaApiReader.http(
            s.chroma_url, tenant=s.chroma_tenant, database=s.chroma_database
        )
        try:
            return {c.name: c.count for c in reader.collections() if not wanted or c.name in wanted}
        finally:
            reader.close()
    if not s.chroma_path:
        return {}
    conn = open_readonly(check_store_dir(Path(s.chroma_path).expanduser()))
    try:
        rows = conn.execute(
            "SELECT c.name, count(e.id) FROM collections c "
            "LEFT JOIN segments g ON g.collection = c.id AND g.scope = 'METADATA' "
            "LEFT JOIN embeddings e ON e.segment_id = g.id GROUP BY c.name"
        ).fetchall()
    except sqlite3.DatabaseError as exc:
        raise SourceError(f"cannot count the records: {exc}.", title="Corrupted store") from None
    finally:
        conn.close()
    return {name: int(n) for name, n in rows if not wanted or name in wanted}
