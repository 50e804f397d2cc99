"""SupabaseStorage: the ReasoningBank tables in PostgreSQL, over a direct connection or REST.

It writes the rows a migration would write (rows.py), so a store fed by this backend and a
Chroma store migrated later agree hash for hash. Queries go through the schema's search
functions, which return k rows under a workspace filter and respect RLS.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

import numpy as np
import psycopg
from psycopg.types.json import Jsonb

from rbmigrate.config import DEFAULT_MODEL, mask_dsn
from rbmigrate.embeddings import Embedder
from rbmigrate.records.model import MemoryRow, TraceRow
from rbmigrate.records.normalize import RuleContext
from rbmigrate.storage.base import (
    MemoryItem,
    RetrievalError,
    StorageBackendInterface,
    StorageError,
    check_query,
    prepared_items,
    stats_dict,
)
from rbmigrate.storage.rows import TraceRows, chroma_records, rows_for
from rbmigrate.target.connection import connect

COLLECTION = "reasoning_memories"
RESULT_COLUMNS = (
    "id, source_id, title, description, content, error_context, pattern_tags, difficulty_level,"
    " domain_category, parent_memory_id, evolution_stage, similarity, trace_outcome,"
    " trace_timestamp, workspace_id"
)


def _vec_text(v: np.ndarray) -> str:
    return "[" + ",".join(repr(float(x)) for x in np.asarray(v, np.float32)) + "]"


def memory_item(r: dict[str, Any]) -> MemoryItem:
    ts = r.get("trace_timestamp")
    if isinstance(ts, str):
        ts = datetime.fromisoformat(ts)
    return MemoryItem(
        id=str(r.get("source_id") or r["id"]),
        title=r["title"],
        description=r.get("description"),
        content=r["content"],
        error_context=r.get("error_context"),
        pattern_tags=list(r.get("pattern_tags") or []),
        difficulty_level=r.get("difficulty_level"),
        domain_category=r.get("domain_category"),
        parent_memory_id=str(r["parent_memory_id"]) if r.get("parent_memory_id") else None,
        evolution_stage=int(r.get("evolution_stage") or 0),
        similarity_score=float(r["similarity"]),
        trace_outcome=r.get("trace_outcome"),
        trace_timestamp=ts,
        workspace_id=r.get("workspace_id"),
    )


class SupabaseStorage(StorageBackendInterface):
    def __init__(
        self,
        db_url: str | None = None,
        supabase_url: str | None = None,
        supabase_key: str | None = None,
        *,
        embedding_model: str = DEFAULT_MODEL,
        collection_name: str = COLLECTION,
        schema: str = "public",
        exact_search: bool = False,
        embedder: Embedder | None = None,
        timezone: tzinfo = UTC,
    ) -> None:
        self.collection = collection_name
        self.schema = schema
        self.exact = exact_search
        self.embedder = embedder or Embedder(embedding_model)
        self.model = embedding_model
        self.rules = RuleContext(timezone=timezone)
        self._lock = threading.Lock()
        self._pg: psycopg.Connection[Any] | None = None
        self._rest: Any = None
        if db_url:
            self._pg = connect(db_url, autocommit=True, schema=schema)
            self.location = mask_dsn(db_url)
        elif supabase_url and supabase_key:
            from supabase import create_client

            try:
                self._rest = create_client(supabase_url, supabase_key).postgrest.schema(schema)
            except Exception as exc:
                raise StorageError(
                    f"cannot set up the Supabase client for {supabase_url}: {exc}."
                ) from None
            self.location = supabase_url
        else:
            raise StorageError(
                "SupabaseStorage needs db_url, or supabase_url and supabase_key.",
                hint="set SUPABASE_DB_URL, or SUPABASE_URL and SUPABASE_KEY.",
            )

    # --- writing -------------------------------------------------------------------------------
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
        vectors = self.embedder.encode(
            [f"{i['title']}\n{i['description']}\n{i['content']}" for i in items]
        )
        records = chroma_records(
            self.collection, trace_id, task, outcome, items, workspace_id, when, vectors
        )
        rows = rows_for(records, self.rules, self.model)
        task_vec = self.embedder.encode([rows.trace.task])[0] if rows.trace.task else None
        if self._pg is not None:
            self._write_pg(rows, task_vec)
        else:
            self._write_rest(rows, task_vec)
        return trace_id

    def _ordered(self, memories: list[MemoryRow]) -> list[MemoryRow]:
        """Parents in the same trace first: the foreign key is checked row by row."""
        ids = {m.id for m in memories}
        return sorted(memories, key=lambda m: m.parent_ref in ids)

    def _write_pg(self, rows: TraceRows, task_vec: np.ndarray | None) -> None:
        assert self._pg is not None
        t = rows.trace
        with self._lock, self._pg.transaction():
            self._pg.execute(
                "INSERT INTO reasoning_traces AS t (id, task, task_embedding, trajectory, outcome,"
                ' metadata, parent_trace_id, "timestamp", num_memories, workspace_id, source_id,'
                " source_hash) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (id) DO UPDATE SET task = excluded.task,"
                " task_embedding = excluded.task_embedding, outcome = excluded.outcome,"
                ' metadata = excluded.metadata, "timestamp" = excluded."timestamp",'
                " num_memories = excluded.num_memories, workspace_id = excluded.workspace_id,"
                " source_id = excluded.source_id, source_hash = excluded.source_hash"
                " WHERE t.source_hash IS DISTINCT FROM excluded.source_hash",
                _trace_params(t, task_vec),
            )
            batch = {m.id for m in rows.memories}
            parents = [
                m.parent_ref for m in rows.memories if m.parent_ref and m.parent_ref not in batch
            ]
            found = (
                {
                    r[0]
                    for r in self._pg.execute(
                        "SELECT id FROM memory_items WHERE id = ANY(%s)", (parents,)
                    ).fetchall()
                }
                if parents
                else set()
            )
            for m in self._ordered(rows.memories):
                ok = m.parent_ref is None or m.parent_ref in batch or m.parent_ref in found
                self._pg.execute(
                    "INSERT INTO memory_items AS m (id, trace_id, title, description, content,"
                    " content_embedding, error_context, pattern_tags, difficulty_level,"
                    " domain_category, parent_memory_id, evolution_stage, workspace_id, created_at,"
                    " source_id, source_collection, source_hash, metadata) VALUES"
                    " (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT (id) DO UPDATE SET title = excluded.title,"
                    " description = excluded.description, content = excluded.content,"
                    " content_embedding = excluded.content_embedding,"
                    " error_context = excluded.error_context, pattern_tags = excluded.pattern_tags,"
                    " difficulty_level = excluded.difficulty_level,"
                    " domain_category = excluded.domain_category,"
                    " parent_memory_id = excluded.parent_memory_id,"
                    " evolution_stage = excluded.evolution_stage, workspace_id = excluded.workspace_id,"
                    " source_hash = excluded.source_hash, metadata = excluded.metadata"
                    " WHERE m.source_hash IS DISTINCT FROM excluded.source_hash",
                    _memory_params(m, ok),
                )

    def _write_rest(self, rows: TraceRows, task_vec: np.ndarray | None) -> None:
        t = rows.trace
        trace = {
            "id": str(t.id),
            "task": t.task,
            "task_embedding": _vec_text(task_vec) if task_vec is not None else None,
            "trajectory": t.trajectory,
            "outcome": t.outcome,
            "metadata": t.metadata,
            "parent_trace_id": None,
            "timestamp": t.timestamp.isoformat(),
            "num_memories": t.num_memories,
            "workspace_id": t.workspace_id,
            "source_id": t.source_id,
            "source_hash": t.source_hash,
        }
        batch = {m.id for m in rows.memories}
        parents = [
            str(m.parent_ref) for m in rows.memories if m.parent_ref and m.parent_ref not in batch
        ]
        found: set[str] = set()
        try:
            if parents:
                got = self._rest.table("memory_items").select("id").in_("id", parents).execute()
                found = {r["id"] for r in got.data}
            self._rest.table("reasoning_traces").upsert(trace, on_conflict="id").execute()
            mems = []
            for m in self._ordered(rows.memories):
                ok = m.parent_ref is None or m.parent_ref in batch or str(m.parent_ref) in found
                mems.append(_memory_json(m, ok))
            self._rest.table("memory_items").upsert(mems, on_conflict="id").execute()
        except Exception as exc:
            raise StorageError(f"writing to {self.location} failed: {_short(exc)}.") from None

    # --- reading -------------------------------------------------------------------------------
    def query_similar_memories(
        self,
        query_text: str,
        n_results: int = 5,
        include_errors: bool = True,
        domain_filter: str | None = None,
        workspace_id: str | None = None,
    ) -> list[MemoryItem]:
        check_query(query_text, n_results)
        vec = self.embedder.encode([query_text])[0]
        k = n_results
        while True:
            got = self._search(vec, k, domain_filter, workspace_id)
            keep = [m for m in got if include_errors or m.error_context is None]
            if len(keep) >= n_results or len(got) < k or k >= 1000:
                return keep[:n_results]
            k = min(1000, k * 4)

    def _search(
        self, vec: np.ndarray, k: int, domain: str | None, workspace: str | None
    ) -> list[MemoryItem]:
        try:
            if self._pg is not None:
                with self._lock:
                    cur = self._pg.execute(
                        f"SELECT {RESULT_COLUMNS} FROM search_similar_memories(%s, %s, %s, %s, %s)",
                        (np.asarray(vec, np.float32), k, domain, workspace, self.exact),
                    )
                    names = [d.name for d in cur.description or []]
                    return [memory_item(dict(zip(names, r, strict=True))) for r in cur.fetchall()]
            res = self._rest.rpc(
                "search_similar_memories",
                {
                    "query_embedding": _vec_text(vec),
                    "match_count": k,
                    "domain_filter": domain,
                    "workspace_filter": workspace,
                    "exact": self.exact,
                },
            ).execute()
            return [memory_item(r) for r in res.data]
        except psycopg.Error as exc:
            raise RetrievalError(f"search on {self.location} failed: {_short(exc)}.") from None
        except Exception as exc:
            raise RetrievalError(f"search on {self.location} failed: {_short(exc)}.") from None

    def get_statistics(self, workspace_id: str | None = None) -> dict[str, Any]:
        if self._pg is not None:
            with self._lock:
                row = self._pg.execute(
                    "SELECT total_traces, success_traces, failure_traces, total_memories,"
                    " memories_with_errors FROM get_reasoning_bank_stats(%s)",
                    (workspace_id,),
                ).fetchone()
        else:
            data = (
                self._rest.rpc("get_reasoning_bank_stats", {"workspace_filter": workspace_id})
                .execute()
                .data
            )
            r = data[0] if data else {}
            row = tuple(
                r.get(k, 0)
                for k in (
                    "total_traces",
                    "success_traces",
                    "failure_traces",
                    "total_memories",
                    "memories_with_errors",
                )
            )
        a, b, c, d, e = (int(x or 0) for x in (row or (0, 0, 0, 0, 0)))
        return stats_dict(a, b, c, d, e)

    # --- deleting ------------------------------------------------------------------------------
    def _cutoff(self, retention_days: int) -> datetime:
        naive = datetime.now() - timedelta(days=retention_days)
        return naive.replace(tzinfo=self.rules.timezone)

    def delete_old_traces(
        self, retention_days: int, workspace_id: str | None = None
    ) -> dict[str, int]:
        if retention_days < 0:
            raise StorageError(f"retention_days must be 0 or more; got {retention_days}.")
        return self._delete('"timestamp" < %s', self._cutoff(retention_days), workspace_id)

    def delete_workspace(self, workspace_id: str) -> dict[str, int]:
        if not workspace_id:
            raise StorageError("delete_workspace needs a workspace id.")
        return self._delete("true", None, workspace_id)

    def _delete(self, where: str, cutoff: datetime | None, workspace: str | None) -> dict[str, int]:
        if self._pg is None:
            return self._delete_rest(cutoff, workspace)
        params: list[Any] = [cutoff] if cutoff is not None else []
        params += [workspace, workspace]
        with self._lock, self._pg.transaction():
            row = self._pg.execute(
                "WITH doomed AS (SELECT id FROM reasoning_traces WHERE "
                + where
                + " AND (%s::text IS NULL OR workspace_id = %s)),"
                " mem AS (DELETE FROM memory_items WHERE trace_id IN (SELECT id FROM doomed) RETURNING 1),"
                " tr AS (DELETE FROM reasoning_traces WHERE id IN (SELECT id FROM doomed) RETURNING 1)"
                " SELECT (SELECT count(*) FROM tr), (SELECT count(*) FROM mem)",
                params,
            ).fetchone()
        return {
            "deleted_traces": int(row[0]) if row else 0,
            "deleted_memories": int(row[1]) if row else 0,
        }

    def _delete_rest(self, cutoff: datetime | None, workspace: str | None) -> dict[str, int]:
        try:
            q = self._rest.table("reasoning_traces").select("id")
            if cutoff is not None:
                q = q.lt("timestamp", cutoff.isoformat())
            if workspace is not None:
                q = q.eq("workspace_id", workspace)
            ids = [r["id"] for r in q.limit(1000).execute().data]
            traces = memories = 0
            while ids:
                for start in range(0, len(ids), 100):
                    chunk = ids[start : start + 100]
                    m = self._rest.table("memory_items").delete().in_("trace_id", chunk).execute()
                    t = self._rest.table("reasoning_traces").delete().in_("id", chunk).execute()
                    memories += len(m.data)
                    traces += len(t.data)
                ids = [r["id"] for r in q.limit(1000).execute().data]
        except Exception as exc:
            raise StorageError(f"deleting on {self.location} failed: {_short(exc)}.") from None
        return {"deleted_traces": traces, "deleted_memories": memories}

    def close(self) -> None:
        if self._pg is not None:
            self._pg.close()


def _trace_params(t: TraceRow, task_vec: np.ndarray | None) -> tuple[Any, ...]:
    return (
        t.id,
        t.task,
        None if task_vec is None else np.asarray(task_vec, np.float32),
        Jsonb(t.trajectory),
        t.outcome,
        Jsonb(t.metadata),
        None,
        t.timestamp,
        t.num_memories,
        t.workspace_id,
        t.source_id,
        t.source_hash,
    )


def _memory_params(m: MemoryRow, parent_ok: bool) -> tuple[Any, ...]:
    metadata = dict(m.metadata)
    if not parent_ok:
        metadata["unresolved_parent_memory_id"] = str(m.parent_ref)
    return (
        m.id,
        m.trace_id,
        m.title,
        m.description,
        m.content,
        None if m.embedding is None else np.asarray(m.embedding, np.float32),
        None if m.error_context is None else Jsonb(m.error_context),
        m.pattern_tags,
        m.difficulty_level,
        m.domain_category,
        m.parent_ref if parent_ok else None,
        m.evolution_stage,
        m.workspace_id,
        m.created_at,
        m.source_id,
        m.source_collection,
        m.source_hash,
        Jsonb(metadata),
    )


def _memory_json(m: MemoryRow, parent_ok: bool) -> dict[str, Any]:
    metadata = dict(m.metadata)
    if not parent_ok:
        metadata["unresolved_parent_memory_id"] = str(m.parent_ref)
    return {
        "id": str(m.id),
        "trace_id": str(m.trace_id),
        "title": m.title,
        "description": m.description,
        "content": m.content,
        "content_embedding": None if m.embedding is None else _vec_text(m.embedding),
        "error_context": m.error_context,
        "pattern_tags": m.pattern_tags,
        "difficulty_level": m.difficulty_level,
        "domain_category": m.domain_category,
        "parent_memory_id": str(m.parent_ref) if parent_ok and m.parent_ref else None,
        "evolution_stage": m.evolution_stage,
        "workspace_id": m.workspace_id,
        "created_at": m.created_at.isoformat(),
        "source_id": m.source_id,
        "source_collection": m.source_collection,
        "source_hash": m.source_hash,
        "metadata": metadata,
    }


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:300]
