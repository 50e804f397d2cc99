"""create_storage_backend: one setting picks the store (arguments first, then environment)."""

from __future__ import annotations

import os
from typing import Any

from rbmigrate.config import DEFAULT_MODEL
from rbmigrate.storage.base import StorageBackendInterface, StorageError

TYPES = ("chromadb", "supabase", "dual")


def _chroma(kw: dict[str, Any]) -> StorageBackendInterface:
    from rbmigrate.storage.chroma import ChromaStorage

    return ChromaStorage(
        persist_directory=kw.get("persist_directory")
        or os.environ.get("CHROMA_PATH")
        or "./chroma_data",
        collection_name=kw.get("collection_name") or "reasoning_memories",
        embedding_model=kw.get("embedding_model") or DEFAULT_MODEL,
        embedder=kw.get("embedder"),
    )


def _supabase(kw: dict[str, Any]) -> StorageBackendInterface:
    from rbmigrate.storage.supabase import SupabaseStorage

    db_url = kw.get("db_url") or os.environ.get("SUPABASE_DB_URL")
    url = kw.get("supabase_url") or os.environ.get("SUPABASE_URL")
    key = kw.get("supabase_key") or os.environ.get("SUPABASE_KEY")
    if not db_url and not (url and key):
        missing = (
            "SUPABASE_KEY" if url else ("SUPABASE_URL" if key else "SUPABASE_URL and SUPABASE_KEY")
        )
        raise StorageError(
            f"the supabase backend needs SUPABASE_DB_URL, or SUPABASE_URL and SUPABASE_KEY "
            f"(missing: {missing}).",
            title="Storage not configured",
            hint="pass db_url= or supabase_url= and supabase_key=, or set the environment variables.",
        )
    return SupabaseStorage(
        db_url=db_url,
        supabase_url=url,
        supabase_key=key,
        embedding_model=kw.get("embedding_model") or DEFAULT_MODEL,
        collection_name=kw.get("collection_name") or "reasoning_memories",
        schema=kw.get("schema") or "public",
        exact_search=bool(kw.get("exact_search", False)),
        embedder=kw.get("embedder"),
    )


def create_storage_backend(
    backend_type: str | None = None, **kwargs: Any
) -> StorageBackendInterface:
    """`backend_type` chromadb | supabase | dual, else STORAGE_BACKEND, else chromadb.

    dual writes Chroma and Supabase and reads `primary` (chromadb by default, or
    DUAL_PRIMARY): run it during the migration, then switch the primary to supabase.
    """
    kind = (backend_type or os.environ.get("STORAGE_BACKEND") or "chromadb").strip().lower()
    if kind in ("chroma", "chromadb"):
        return _chroma(kwargs)
    if kind == "supabase":
        return _supabase(kwargs)
    if kind == "dual":
        from rbmigrate.storage.dual import DualWriteStorage

        chroma, supa = _chroma(kwargs), _supabase(kwargs)
        primary = (kwargs.get("primary") or os.environ.get("DUAL_PRIMARY") or "chromadb").lower()
        first, second = (supa, chroma) if primary == "supabase" else (chroma, supa)
        return DualWriteStorage(first, second, kwargs.get("outbox") or "rbmigrate-outbox.sqlite")
    raise StorageError(
        f"unknown storage backend {kind!r}.",
        hint=f"use one of {', '.join(TYPES)} (STORAGE_BACKEND or backend_type=).",
    )
