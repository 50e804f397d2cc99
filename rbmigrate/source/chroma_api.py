"""Read through the chromadb library: a Chroma server (HttpClient) or a snapshot copy.

Pages come from `get(limit, offset, include=[...])`, at most 5,000 per call (chromadb 1.5
fails with "too many SQL variables" above 32,766 rows with metadatas). Offset paging is
stable only while nobody writes, which is why a directory is read from a snapshot and a
server run reconciles against the counts taken at its start.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from rbmigrate.config import MAX_PAGE
from rbmigrate.errors import SourceConnectionError, SourceError
from rbmigrate.records.model import SourceRecord
from rbmigrate.source.base import CollectionInfo, classify_layout, space_of

LAYOUT_SAMPLE = 50


def _configured_space(collection: Any) -> str | None:
    for getter in ("configuration_json", "configuration"):
        try:
            config = getattr(collection, getter)
        except Exception:
            continue
        if isinstance(config, dict):
            hnsw = config.get("hnsw") or config.get("hnsw_configuration") or {}
            space = hnsw.get("space") if isinstance(hnsw, dict) else None
            if space is None and isinstance(config.get("spann"), dict):
                space = config["spann"].get("space")
            if space in ("l2", "ip", "cosine"):
                return str(space)
    return None


class ChromaApiReader:
    def __init__(self, client: Any, kind: str, location: str) -> None:
        self.client = client
        self.kind = kind
        self.location = location
        self._handles: dict[str, Any] = {}

    @classmethod
    def http(
        cls,
        url: str,
        *,
        token: str = "",
        tenant: str = "default_tenant",
        database: str = "default_database",
    ) -> ChromaApiReader:
        import chromadb
        from chromadb.config import Settings

        parsed = urlparse(url)
        headers = {"Authorization": f"Bearer {token}"} if token else None
        try:
            client = chromadb.HttpClient(
                host=parsed.hostname or "127.0.0.1",
                port=parsed.port or (443 if parsed.scheme == "https" else 8000),
                ssl=parsed.scheme == "https",
                headers=headers,
                tenant=tenant,
                database=database,
                settings=Settings(anonymized_telemetry=False),
            )
            client.heartbeat()
        except Exception as exc:
            raise SourceConnectionError(
                f"cannot reach the Chroma server at {url}: {_short(exc)}.",
                hint="check that `chroma run` is up and the URL, tenant and database are right.",
            ) from None
        return cls(client, "http", url)

    @classmethod
    def persistent(cls, snapshot: Path) -> ChromaApiReader:
        """Opens a *snapshot* (never the user's directory: chromadb rewrites what it opens)."""
        import chromadb
        from chromadb.config import Settings

        try:
            client = chromadb.PersistentClient(
                path=str(snapshot), settings=Settings(anonymized_telemetry=False)
            )
        except Exception as exc:
            raise SourceError(
                f"chromadb cannot open the snapshot of this store: {_short(exc)}.",
                title="Unreadable store",
                hint="the store may be damaged or written by a newer chromadb.",
            ) from None
        return cls(client, "persistent", str(snapshot))

    def server_version(self) -> str | None:
        try:
            return str(self.client.get_version())
        except Exception:
            return None

    def _collection(self, name: str) -> Any:
        if name not in self._handles:
            try:
                self._handles[name] = self.client.get_collection(name)
            except Exception as exc:
                raise SourceError(f"collection {name!r} cannot be opened: {_short(exc)}.") from None
        return self._handles[name]

    def collections(self) -> list[CollectionInfo]:
        try:
            listed = self.client.list_collections()
        except Exception as exc:
            raise SourceConnectionError(f"cannot list collections: {_short(exc)}.") from None
        out: list[CollectionInfo] = []
        for item in sorted(listed, key=lambda c: c.name if hasattr(c, "name") else str(c)):
            name = item.name if hasattr(item, "name") else str(item)
            col = self._collection(name)
            meta = dict(col.metadata or {})
            configured = _configured_space(col)
            space, space_source = space_of(meta, configured)
            count = int(col.count())
            sample = (
                col.get(limit=LAYOUT_SAMPLE, include=["metadatas"]) if count else {"metadatas": []}
            )
            dimension = getattr(col, "dimension", None)
            if dimension is None and count:
                peek = col.get(limit=1, include=["embeddings"])
                emb = peek.get("embeddings")
                if emb is not None and len(emb):
                    dimension = len(emb[0])
            layout, detail = classify_layout(list(sample.get("metadatas") or []), count)
            out.append(
                CollectionInfo(
                    name=name,
                    id=str(col.id),
                    count=count,
                    dimension=dimension,
                    space=space,
                    space_source=space_source,
                    configured_space=configured,
                    layout=layout,
                    layout_detail=detail,
                    metadata={
                        k: v for k, v in meta.items() if isinstance(v, str | int | float | bool)
                    },
                )
            )
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
        """chromadb returns whole metadata; `metadata_keys` is a hint it cannot use."""
        col = self._collection(collection.name)
        include = ["documents", "metadatas"] + (["embeddings"] if with_embeddings else [])
        size = min(page_size, MAX_PAGE)
        offset = after
        while True:
            try:
                got = col.get(limit=size, offset=offset, include=include)
            except Exception as exc:
                raise SourceConnectionError(
                    f"reading {collection.name} at offset {offset} failed: {_short(exc)}."
                ) from None
            ids = got.get("ids") or []
            if not ids:
                return
            docs = got.get("documents") or [None] * len(ids)
            metas = got.get("metadatas") or [None] * len(ids)
            embs = got.get("embeddings") if with_embeddings else None
            page = []
            for i, rid in enumerate(ids):
                vec = None
                if embs is not None and embs[i] is not None:
                    vec = np.asarray(embs[i], dtype=np.float64).astype(np.float32)
                page.append(
                    SourceRecord(
                        collection=collection.name,
                        id=rid,
                        document=docs[i],
                        metadata=dict(metas[i]) if metas[i] else None,
                        embedding=vec,
                        position=offset + i + 1,
                    )
                )
            offset += len(ids)
            yield page
            if len(ids) < size:
                return

    def close(self) -> None:
        self._handles.clear()
        with contextlib.suppress(Exception):
            self.client.clear_system_cache()


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]
