"""ChromaStorage: the upstream layout (DESIGN §2), one record per memory item.

This is the store a ReasoningBank server writes before it switches; rbmigrate migrates what
it writes like an upstream store (the demo generator uses the same layout function).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from rbmigrate.config import DEFAULT_MODEL
from rbmigrate.embeddings import Embedder
from rbmigrate.engine.compare import similarity_from
from rbmigrate.storage.base import (
    MemoryItem,
    RetrievalError,
    StorageBackendInterface,
    StorageError,
    check_query,
    prepared_items,
    stats_dict,
)
from rbmigrate.storage.layout import chroma_record

PAGE = 5000


def _parse_time(value: Any) -> datetime | None:
    try:
        ts = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return ts.replace(tzinfo=None) if ts.tzinfo else ts


class ChromaStorage(StorageBackendInterface):
    def __init__(
        self,
        persist_directory: str | Path = "./chroma_data",
        collection_name: str = "reasoning_memories",
        embedding_model: str = DEFAULT_MODEL,
        *,
        embedder: Embedder | None = None,
        client: Any = None,
    ) -> None:
        import chromadb
        from chromadb.config import Settings

        self.embedder = embedder or Embedder(embedding_model)
        try:
            self.client = client or chromadb.PersistentClient(
                path=str(persist_directory), settings=Settings(anonymized_telemetry=False)
            )
            self.collection = self.client.get_or_create_collection(
                collection_name,
                metadata={"description": "ReasoningBank memory storage"},
                embedding_function=None,
            )
        except Exception as exc:
            raise StorageError(
                f"cannot open the Chroma store at {persist_directory}: {exc}."
            ) from None
        meta = dict(self.collection.metadata or {})
        self.space = str(meta.get("hnsw:space") or "l2")

    def add_trace(
        self,
        trace_id: str,
        task: str,
        trajectory: list[Any],
        outcome: str,
        memory_items: list[Any],
        metadata: dict[str, Any] | None = None,
        workspace_id: str | None = None,
        *,
        timestamp: datetime | None = None,
    ) -> str:
        when = timestamp or datetime.now()
        items = prepared_items(memory_items, when)
        if not items:
            raise StorageError("a trace needs at least one memory item.")
        records = [
            chroma_record(
                trace_id=trace_id,
                task=task,
                outcome=outcome,
                item=item,
                workspace_id=workspace_id,
                timestamp=when,
            )
            for item in items
        ]
        vectors = self.embedder.encode([r[1] for r in records])
        try:
            self.collection.upsert(
                ids=[r[0] for r in records],
                documents=[r[1] for r in records],
                metadatas=[r[2] for r in records],
                embeddings=[v for v in vectors],
            )
        except Exception as exc:
            raise StorageError(f"Chroma refused the trace {trace_id!r}: {exc}.") from None
        return trace_id

    def query_similar_memories(
        self,
        query_text: str,
        n_results: int = 5,
        include_errors: bool = True,
        domain_filter: str | None = None,
        workspace_id: str | None = None,
    ) -> list[MemoryItem]:
        check_query(query_text, n_results)
        count = self.collection.count()
        if count == 0:
            return []
        clauses: list[dict[str, Any]] = []
        if workspace_id is not None:
            clauses.append({"workspace_id": workspace_id})
        if domain_filter is not None:
            clauses.append({"domain_category": domain_filter})
        where: Any = clauses[0] if len(clauses) == 1 else ({"$and": clauses} if clauses else None)
        vec = self.embedder.encode([query_text])[0]
        k = n_results
        while True:
            try:
                res = self.collection.query(
                    query_embeddings=[vec.tolist()],
                    n_results=min(k, count),
                    where=where,
                    include=["distances", "metadatas", "documents"],
                )
            except Exception as exc:
                raise RetrievalError(f"the Chroma query failed: {exc}.") from None
            got = [
                self._item(sid, dist, meta)
                for sid, dist, meta in zip(
                    res["ids"][0],
                    (res["distances"] or [[]])[0],
                    (res["metadatas"] or [[]])[0],
                    strict=False,
                )
            ]
            keep = [m for m in got if include_errors or not m.error_context]
            if len(keep) >= n_results or len(got) < min(k, count) or k >= count:
                return keep[:n_results]
            k = min(count, k * 4)

    def _item(self, sid: str, distance: float, meta: Any) -> MemoryItem:
        meta = dict(meta or {})
        try:
            data = json.loads(meta.get("memory_data") or "{}")
        except ValueError:
            data = {}
        return MemoryItem(
            id=str(sid),
            title=str(data.get("title", "")),
            description=data.get("description"),
            content=str(data.get("content", "")),
            error_context=data.get("error_context"),
            pattern_tags=list(data.get("pattern_tags") or []),
            difficulty_level=data.get("difficulty_level"),
            domain_category=data.get("domain_category"),
            parent_memory_id=data.get("parent_memory_id"),
            evolution_stage=int(data.get("evolution_stage") or 0),
            similarity_score=similarity_from(self.space, float(distance)),
            trace_outcome=meta.get("outcome"),
            trace_timestamp=_parse_time(meta.get("timestamp")),
            workspace_id=meta.get("workspace_id"),
        )

    def _all(self, where: dict[str, Any] | None) -> list[tuple[str, dict[str, Any]]]:
        out: list[tuple[str, dict[str, Any]]] = []
        offset = 0
        while True:
            page = self.collection.get(
                where=where, limit=PAGE, offset=offset, include=["metadatas"]
            )
            ids = page["ids"]
            out += [(i, dict(m or {})) for i, m in zip(ids, page["metadatas"] or [], strict=False)]
            if len(ids) < PAGE:
                return out
            offset += PAGE

    def get_statistics(self, workspace_id: str | None = None) -> dict[str, Any]:
        rows = self._all({"workspace_id": workspace_id} if workspace_id else None)
        outcomes: dict[str, str] = {}
        errors = 0
        for _sid, meta in rows:
            outcomes.setdefault(str(meta.get("trace_id")), str(meta.get("outcome")))
            errors += bool(meta.get("has_error_context"))
        values = list(outcomes.values())
        return stats_dict(
            len(outcomes), values.count("success"), values.count("failure"), len(rows), errors
        )

    def _delete(self, rows: list[tuple[str, dict[str, Any]]]) -> dict[str, int]:
        ids = [sid for sid, _ in rows]
        for start in range(0, len(ids), PAGE):
            self.collection.delete(ids=ids[start : start + PAGE])
        return {
            "deleted_traces": len({meta.get("trace_id") for _, meta in rows}),
            "deleted_memories": len(ids),
        }

    def delete_old_traces(
        self, retention_days: int, workspace_id: str | None = None
    ) -> dict[str, int]:
        if retention_days < 0:
            raise StorageError(f"retention_days must be 0 or more; got {retention_days}.")
        cutoff = datetime.now() - timedelta(days=retention_days)
        rows = self._all({"workspace_id": workspace_id} if workspace_id else None)
        old = []
        for sid, meta in rows:
            ts = _parse_time(meta.get("timestamp"))
            if ts is not None and ts < cutoff:
                old.append((sid, meta))
        return self._delete(old)

    def delete_workspace(self, workspace_id: str) -> dict[str, int]:
        if not workspace_id:
            raise StorageError("delete_workspace needs a workspace id.")
        return self._delete(self._all({"workspace_id": workspace_id}))
