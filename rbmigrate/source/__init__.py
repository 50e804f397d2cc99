"""The Chroma side: snapshot the store (or talk to a server), discover, and page records."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rbmigrate.config import Config
from rbmigrate.errors import ConfigError, SourceError
from rbmigrate.events import EventSink, LogMessage, NullSink, RunControl
from rbmigrate.records.model import SourceRecord
from rbmigrate.records.traces import load_traces_json
from rbmigrate.source.base import CollectionInfo, Reader
from rbmigrate.source.chroma_api import ChromaApiReader
from rbmigrate.source.formats import ChromaFormat
from rbmigrate.source.liveness import processes_using
from rbmigrate.source.native import NativeReader, NativeUnsupported
from rbmigrate.source.read_ahead import pages_in_child
from rbmigrate.source.snapshot import Snapshot, take_snapshot

__all__ = ["ChromaSource", "CollectionInfo", "open_source"]

SNAPSHOT_MARKER = "snapshot.json"
# a child costs about 0.3 s to start; reading 10,000 records in process costs about 0.5 s
READ_AHEAD_MIN = 10_000


@dataclass
class ChromaSource:
    reader: Reader
    kind: str  # persistent | http
    location: str
    reader_name: str
    format: ChromaFormat | None = None
    snapshot: Path | None = None
    digest: str = ""  # of the snapshot's files; empty when there is none
    traces_json: Path | None = None
    server_version: str | None = None
    notes: list[str] = field(default_factory=list)
    _collections: list[CollectionInfo] | None = None

    def collections(self) -> list[CollectionInfo]:
        if self._collections is None:
            self._collections = self.reader.collections()
        return self._collections

    def collection(self, name: str) -> CollectionInfo:
        for info in self.collections():
            if info.name == name:
                return info
        raise unknown_collection(name, self.collections())

    def select(self, names: list[str]) -> list[CollectionInfo]:
        """The collections to migrate: those named, or every ReasoningBank-layout one."""
        if names:
            return [self.collection(n) for n in names]
        return [
            c
            for c in self.collections()
            if c.layout == "reasoningbank"
            or (c.layout == "empty" and c.name == "reasoning_memories")
        ]

    def read_ahead(
        self,
        coll: CollectionInfo,
        *,
        after: int,
        page_size: int,
        with_embeddings: bool = True,
        metadata_keys: tuple[str, ...] | None = None,
    ) -> Iterator[list[SourceRecord]]:
        """Pages for a pass that works on every record: a snapshot the native reader reads
        is read ahead in a child process (read_ahead.py says why), unless the collection is
        too small to repay starting one."""
        if isinstance(self.reader, NativeReader) and coll.count >= READ_AHEAD_MIN:
            r = self.reader
            return pages_in_child(
                r.snapshot,
                r.scratch,
                r.tenant,
                r.database,
                coll.name,
                after=after,
                page_size=page_size,
                with_embeddings=with_embeddings,
                metadata_keys=metadata_keys,
            )
        return self.reader.pages(
            coll,
            after=after,
            with_embeddings=with_embeddings,
            page_size=page_size,
            metadata_keys=metadata_keys,
        )

    def legacy_traces(self) -> dict[Any, dict[str, Any]]:
        return load_traces_json(self.traces_json) if self.traces_json else {}

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "location": self.location,
            "chroma_format": self.format.label
            if self.format
            else (f"Chroma server {self.server_version}" if self.server_version else None),
            "reader": self.reader_name,
            "collections": [c.summary() for c in self.collections()],
        }

    def close(self) -> None:
        self.reader.close()


def unknown_collection(name: str, available: list[CollectionInfo]) -> SourceError:
    names = ", ".join(c.name for c in available) or "none"
    return SourceError(
        f"collection {name!r} does not exist in this store (collections: {names}).",
        title="No such collection",
        hint="pick one of the listed collections with --collection, or omit it to take every "
        "ReasoningBank collection.",
    )


def _snapshot(path: Path, dest: Path, control: RunControl | None) -> Snapshot | None:
    """Take a snapshot, or reuse the complete one a resumed run left behind."""
    marker = dest.parent / SNAPSHOT_MARKER
    if dest.is_dir() and marker.is_file():
        return None
    if dest.exists():
        shutil.rmtree(dest)
    snap = take_snapshot(path, dest, control)
    marker.write_text(
        json.dumps(
            {
                "source": str(path),
                "bytes": snap.bytes,
                "seconds": round(snap.seconds, 3),
                "format": snap.format.as_dict(),
                "digest": snap.digest,
            }
        )
    )
    return snap


def open_source(
    cfg: Config,
    run_dir: Path,
    *,
    control: RunControl | None = None,
    sink: EventSink | None = None,
) -> ChromaSource:
    sink = sink or NullSink()
    s = cfg.source
    if s.chroma_url:
        from rbmigrate.config import resolve_secret

        http = ChromaApiReader.http(
            s.chroma_url,
            token=resolve_secret(s.chroma_token, "[source] chroma_token") if s.chroma_token else "",
            tenant=s.chroma_tenant,
            database=s.chroma_database,
        )
        src = ChromaSource(
            reader=http,
            kind="http",
            location=s.chroma_url,
            reader_name="chromadb-http",
            server_version=http.server_version(),
        )
        if s.traces_json:
            src.traces_json = Path(s.traces_json).expanduser()
        return src
    if not s.chroma_path:
        raise ConfigError(
            "no source given.",
            title="No source",
            hint="pass --chroma-path DIR (a Chroma directory) or --chroma-url URL (a Chroma server).",
        )
    path = Path(s.chroma_path).expanduser()
    users = processes_using(path) if path.is_dir() else []
    if users:
        who = ", ".join(f"{u.name} (pid {u.pid})" for u in users[:3])
        note = (
            f"{path} is open in {who}: a live server may be writing. rbmigrate reads a consistent "
            "snapshot; to include later writes, stop the server or read through a Chroma server."
        )
        sink.emit(LogMessage("warning", note, code="source_in_use"))
    dest = run_dir / "snapshot"
    snap = _snapshot(path, dest, control)
    fmt = snap.format if snap else _marker_format(run_dir)
    if fmt is not None and fmt.newer_than_installed:
        raise SourceError(
            f"{path} was written by a newer chromadb ({fmt.as_dict()['signature']}) than rbmigrate's 1.5.x.",
            title="Store too new",
            hint="upgrade rbmigrate (and its chromadb) before migrating this store.",
        )
    reader: Reader
    reader_name = s.reader
    discovered: list[CollectionInfo] | None = None
    if s.reader in ("auto", "native"):
        try:
            native = NativeReader(dest, run_dir / "scratch", s.chroma_tenant, s.chroma_database)
            try:
                # a snapshot taken while a server writes can have a metadata segment behind
                # its write log: found here, so chromadb (which replays the log) reads it
                discovered = native.collections()
            except NativeUnsupported:
                native.close()
                native.db.close()
                raise
            reader, reader_name = native, "native"
        except NativeUnsupported as exc:
            if s.reader == "native":
                raise SourceError(
                    f"the native reader cannot read this store: {exc}.",
                    hint="use --reader chromadb (memory then grows with the store size).",
                ) from None
            sink.emit(
                LogMessage(
                    "warning",
                    f"native reader unavailable ({exc}); reading with chromadb",
                    code="reader_fallback",
                )
            )
            reader = ChromaApiReader.persistent(dest)
            reader_name = "chromadb"
    else:
        reader = ChromaApiReader.persistent(dest)
        reader_name = "chromadb"
    src = ChromaSource(
        reader=reader,
        kind="persistent",
        location=str(path),
        reader_name=reader_name,
        format=fmt,
        snapshot=dest,
        digest=snap.digest if snap else _marker_digest(run_dir),
    )
    if discovered is not None:
        src._collections = discovered
    if users:
        src.notes.append("source_in_use")
    legacy = Path(s.traces_json).expanduser() if s.traces_json else dest / "traces.json"
    if legacy.is_file():
        src.traces_json = legacy
    return src


def _marker_digest(run_dir: Path) -> str:
    try:
        return str(json.loads((run_dir / SNAPSHOT_MARKER).read_text()).get("digest", ""))
    except (OSError, ValueError, AttributeError):
        return ""


def _marker_format(run_dir: Path) -> ChromaFormat | None:
    try:
        data = json.loads((run_dir / SNAPSHOT_MARKER).read_text())["format"]
    except (OSError, ValueError, KeyError):
        return None
    data.pop("signature", None)
    return ChromaFormat(**data)
