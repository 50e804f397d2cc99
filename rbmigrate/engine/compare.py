"""Compare: the same query on Chroma and on the target, side by side, and a parity report.

One embedding per query goes to both sides: Chroma's own index (the snapshot, or the server)
with the filters as a `where`, and the target's `search_similar_memories`. Distances are
shown raw, similarities on one scale (DESIGN §5): Chroma `l2` is squared L2, so for unit
vectors similarity = 1 - d/2; `ip` and `cosine` give 1 - d; the target's `<=>` is cosine.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import psycopg

from rbmigrate.errors import ConfigError, SourceError
from rbmigrate.records.ids import memory_uuid
from rbmigrate.source import ChromaSource, CollectionInfo
from rbmigrate.source.chroma_api import ChromaApiReader
from rbmigrate.target.rest import vector_text

if TYPE_CHECKING:
    from rbmigrate.target.rest_store import RestStore

K_MAX = 1000
TIE_EPS = 1e-5  # two similarities closer than this are a tie (float32 rounding on each side)

Vector = npt.NDArray[np.float32]


@dataclass
class Hit:
    rank: int
    id: str
    source_id: str
    title: str
    distance: float
    similarity: float
    workspace_id: str | None
    collection: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "id": self.id,
            "source_id": self.source_id,
            "title": self.title,
            "distance": self.distance,
            "similarity": self.similarity,
            "workspace_id": self.workspace_id,
            "collection": self.collection,
        }


def similarity_from(space: str, distance: float) -> float:
    """Chroma distance -> cosine similarity (exact for the unit vectors the model makes)."""
    if space == "l2":
        return 1.0 - distance / 2.0
    return 1.0 - distance


def check_k(k: int) -> int:
    if k < 1 or k > K_MAX:
        raise ConfigError(
            f"k must be between 1 and {K_MAX}; got {k}.",
            title="Bad k",
            hint="pass --k with a value such as 5 or 10.",
        )
    return k


def check_query(text: str | None) -> str:
    if text is None or not text.strip():
        raise ConfigError(
            "the query is empty.",
            title="Empty query",
            hint='pass the text to search for: rbmigrate --headless compare "how do I fix a KeyError"'
            ", or --parity N for a parity report.",
        )
    return text.strip()


def _title(metadata: dict[str, Any] | None, document: str | None) -> str:
    raw = (metadata or {}).get("memory_data")
    if isinstance(raw, str):
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("title"), str):
            return str(data["title"])
    return (document or "").split("\n", 1)[0]


def ranked(hits: list[Hit], k: int) -> list[Hit]:
    hits = sorted(hits, key=lambda h: (-h.similarity, h.id))[:k]
    for i, h in enumerate(hits, 1):
        h.rank = i
    return hits


class ChromaSide:
    """Top-k from Chroma's own index, over the selected memory collections."""

    def __init__(self, source: ChromaSource, collections: list[CollectionInfo]) -> None:
        self._own: ChromaApiReader | None = None
        if source.kind == "http":
            client = getattr(source.reader, "client", None)
        else:
            if source.snapshot is None:
                raise SourceError("the source has no snapshot to query.")
            self._own = ChromaApiReader.persistent(source.snapshot)
            client = self._own.client
        if client is None:
            raise SourceError("the Chroma source cannot run queries through this reader.")
        self.collections = collections
        self.handles: dict[str, Any] = {}
        for info in collections:
            try:
                self.handles[info.name] = client.get_collection(info.name)
            except Exception as exc:
                raise SourceError(f"collection {info.name!r} cannot be queried: {exc}.") from None

    def search(
        self, vector: Vector, k: int, workspace: str | None, domain: str | None
    ) -> list[Hit]:
        clauses: list[dict[str, Any]] = []
        if workspace is not None:
            clauses.append({"workspace_id": workspace})
        if domain is not None:
            clauses.append({"domain_category": domain})
        where = clauses[0] if len(clauses) == 1 else ({"$and": clauses} if clauses else None)
        hits: list[Hit] = []
        for info in self.collections:
            if info.count == 0:
                continue
            try:
                res = self.handles[info.name].query(
                    query_embeddings=[vector.tolist()],
                    n_results=min(k, info.count),
                    where=where,
                    include=["distances", "metadatas", "documents"],
                )
            except Exception as exc:
                raise SourceError(
                    f"Chroma could not run the query on {info.name!r}: {exc}."
                ) from None
            ids = res["ids"][0]
            distances = (res.get("distances") or [[]])[0]
            metas = (res.get("metadatas") or [[None] * len(ids)])[0]
            docs = (res.get("documents") or [[None] * len(ids)])[0]
            for sid, dist, meta, doc in zip(ids, distances, metas, docs, strict=False):
                meta = dict(meta or {})
                ws = meta.get("workspace_id")
                hits.append(
                    Hit(
                        rank=0,
                        id=str(memory_uuid(info.name, str(sid))[0]),
                        source_id=str(sid),
                        title=_title(meta, doc),
                        distance=float(dist),
                        similarity=similarity_from(info.space, float(dist)),
                        workspace_id=str(ws) if ws else None,
                        collection=info.name,
                    )
                )
        return ranked(hits, k)

    def close(self) -> None:
        if self._own is not None:
            self._own.close()


class TargetSide:
    """Top-k from the target's search function, as an application would call it."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def search(
        self, vector: Vector, k: int, workspace: str | None, domain: str | None, exact: bool
    ) -> list[Hit]:
        try:
            rows = self.conn.execute(
                "SELECT id, source_id, title, distance, similarity, workspace_id, "
                "source_collection FROM search_similar_memories(%s, %s, %s, %s, %s)",
                (vector, k, domain, workspace, exact),
            ).fetchall()
        finally:
            if not self.conn.autocommit:
                self.conn.rollback()
        return [
            Hit(
                rank=i,
                id=str(r[0]),
                source_id=r[1] or "",
                title=r[2] or "",
                distance=float(r[3]),
                similarity=float(r[4]),
                workspace_id=r[5],
                collection=r[6] or "",
            )
            for i, r in enumerate(rows, 1)
        ]

    def workspaces(self, collections: list[str]) -> list[str]:
        rows = self.conn.execute(
            "SELECT DISTINCT workspace_id FROM memory_items "
            "WHERE workspace_id IS NOT NULL AND source_collection = ANY(%s) ORDER BY 1",
            (collections,),
        ).fetchall()
        if not self.conn.autocommit:
            self.conn.rollback()
        return [r[0] for r in rows]

    def sample(
        self, collections: list[str], workspace: str | None, n: int, seed: int
    ) -> list[tuple[str, str]]:
        """n memories (source_id, document text), the same ones for the same seed."""
        rows = self.conn.execute(
            "SELECT source_id, concat_ws(E'\\n', title, description, content) FROM memory_items "
            "WHERE source_collection = ANY(%s) AND (%s::text IS NULL OR workspace_id = %s) "
            "AND content_embedding IS NOT NULL ORDER BY md5(id::text || %s) LIMIT %s",
            (collections, workspace, workspace, str(seed), n),
        ).fetchall()
        if not self.conn.autocommit:
            self.conn.rollback()
        return [(r[0], r[1]) for r in rows]


class RestTargetSide:
    """The same three questions over REST: the search function by RPC, workspaces from
    rbmigrate_memory_counts, and the sample ordered client-side exactly as the SQL orders it
    (md5 of id and seed), so both transports sample the same memories."""

    def __init__(self, store: RestStore) -> None:
        self.store = store
        self.client = store.client

    def search(
        self, vector: Vector, k: int, workspace: str | None, domain: str | None, exact: bool
    ) -> list[Hit]:
        rows = self.client.rpc(
            "search_similar_memories",
            {
                "query_embedding": vector_text(vector),
                "match_count": k,
                "domain_filter": domain,
                "workspace_filter": workspace,
                "exact": exact,
            },
            "search memories",
        )
        return [
            Hit(
                rank=i,
                id=str(r["id"]),
                source_id=r.get("source_id") or "",
                title=r.get("title") or "",
                distance=float(r["distance"]),
                similarity=float(r["similarity"]),
                workspace_id=r.get("workspace_id"),
                collection=r.get("source_collection") or "",
            )
            for i, r in enumerate(rows or [], 1)
        ]

    def workspaces(self, collections: list[str]) -> list[str]:
        found: set[str] = set()
        for name in collections:
            found |= {ws for ws in self.store.memory_counts(name) if ws is not None}
        return sorted(found)

    def sample(
        self, collections: list[str], workspace: str | None, n: int, seed: int
    ) -> list[tuple[str, str]]:
        def where(b: Any) -> Any:
            b = b.in_("source_collection", collections).not_.is_("content_embedding", "null")
            return b.eq("workspace_id", workspace) if workspace is not None else b

        ids: list[str] = []
        for page in self.client.scan("memory_items", "id", "id", "sample memories", where):
            ids += [r["id"] for r in page]
        chosen = sorted(ids, key=lambda i: hashlib.md5(f"{i}{seed}".encode()).hexdigest())[:n]
        rows = self.client.select_in(
            "memory_items",
            "id,source_id,title,description,content",
            "id",
            chosen,
            "read sampled memories",
        )
        by_id = {r["id"]: r for r in rows}
        return [
            (
                by_id[i]["source_id"],
                "\n".join(
                    str(by_id[i][c])
                    for c in ("title", "description", "content")
                    if by_id[i][c] is not None
                ),
            )
            for i in chosen
            if i in by_id
        ]


def target_side(store: Any) -> TargetSide | RestTargetSide:
    from rbmigrate.target.rest_store import RestStore

    return RestTargetSide(store) if isinstance(store, RestStore) else TargetSide(store.conn)


def overlap(chroma: list[Hit], target: list[Hit]) -> float:
    if not chroma:
        return 1.0 if not target else 0.0
    return len({h.id for h in chroma} & {h.id for h in target}) / len(chroma)


def recall_up_to_ties(chroma: list[Hit], target: list[Hit]) -> float:
    """Share of Chroma's top-k the target found; a target hit scoring as well as Chroma's k-th
    result counts as found (equal scores may be ordered either way on each side)."""
    if not chroma:
        return 1.0
    ids = {h.id for h in chroma}
    floor = chroma[-1].similarity - TIE_EPS
    found = sum(1 for h in target if h.id in ids or h.similarity >= floor)
    return min(found, len(chroma)) / len(chroma)


def rank_agreement(chroma: list[Hit], target: list[Hit]) -> float:
    """Share of ranks holding the same memory on both sides (ties count as agreeing)."""
    n = min(len(chroma), len(target))
    if n == 0:
        return 1.0 if len(chroma) == len(target) else 0.0
    same = sum(
        1
        for a, b in zip(chroma, target, strict=False)
        if a.id == b.id or abs(a.similarity - b.similarity) <= TIE_EPS
    )
    return same / max(len(chroma), len(target))


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else 0.0


def timed(fn: Callable[..., list[Hit]], *args: Any) -> tuple[list[Hit], float]:
    started = time.perf_counter()
    hits = fn(*args)
    return hits, (time.perf_counter() - started) * 1000.0
