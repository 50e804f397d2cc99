"""Everything one run works on, opened once: source, target, trace index, selection."""

from __future__ import annotations

import contextlib
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from rbmigrate.engine.context import RunContext
from rbmigrate.engine.traceindex import TraceIndex
from rbmigrate.records.ids import memory_uuid
from rbmigrate.records.normalize import RuleContext, is_selected, observe
from rbmigrate.source import ChromaSource, CollectionInfo, open_source
from rbmigrate.target.schema import DEFAULT_DIMENSION, SchemaStatus
from rbmigrate.target.transport import TargetStore, Transport, open_transport

SCAN_PAGE = 5000
# what pass 1 needs of each record's metadata (see records.normalize.observe)
SCAN_KEYS = ("trace_id", "task", "outcome", "timestamp", "workspace_id")


def retry_logger(ctx: RunContext) -> Callable[[str, int, str], None]:
    """How a REST request's retries reach the run's log (and the report's messages)."""

    def note(what: str, attempt: int, failure: str) -> None:
        ctx.log("warning", f"retrying ({attempt}) a request to {what}: {failure}", code="retry")

    return note


@dataclass
class CollectionProblem:
    collection: str
    code: str
    message: str
    refused: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "collection": self.collection,
            "code": self.code,
            "message": self.message,
            "refused": self.refused,
        }


@dataclass
class Session:
    ctx: RunContext
    source: ChromaSource
    store: TargetStore | None
    transport: Transport | None
    index: TraceIndex
    selected: list[CollectionInfo]
    dimension: int
    schema: SchemaStatus | None = None
    problems: list[CollectionProblem] = field(default_factory=list)
    skipped_by_collection: Counter[str] = field(default_factory=Counter)
    trace_warnings: dict[str, int] = field(default_factory=dict)

    @classmethod
    def open(
        cls,
        ctx: RunContext,
        *,
        need_target: bool = True,
        store: TargetStore | None = None,
        transport: Transport | None = None,
    ) -> Session:
        cfg = ctx.cfg
        source: ChromaSource | None = None
        try:
            if need_target and store is None:  # connect first: a bad URL fails before any copy
                with ctx.phase("connect", unit="steps"):
                    transport = open_transport(
                        cfg, cancel=ctx.control.cancel, on_retry=retry_logger(ctx)
                    )
                    store = transport.open_store()
                    store.describe()  # the first request: a wrong URL or key fails here
            with ctx.phase("snapshot", unit="files"):
                source = open_source(cfg, ctx.run_dir, control=ctx.control, sink=ctx.sink)
            with ctx.phase("discover", unit="collections") as done:
                collections = source.collections()
                selected = source.select(cfg.source.collections)
                done[0] = len(collections)
            index = TraceIndex(ctx.run_dir / "traces.sqlite")
        except BaseException:
            if store is not None:
                store.close()
            if transport is not None:
                transport.close()
            if source is not None:
                source.close()
            raise
        session = cls(
            ctx=ctx,
            source=source,
            store=store,
            transport=transport,
            index=index,
            selected=selected,
            dimension=DEFAULT_DIMENSION,
        )
        session.dimension = session._choose_dimension()
        if store is not None:
            session.schema = store.schema_status(session.dimension)
        session._collection_problems()
        return session

    def _choose_dimension(self) -> int:
        cfg = self.ctx.cfg
        if cfg.target.dimension:
            return cfg.target.dimension
        if self.store is not None:
            existing = self.store.schema_status(DEFAULT_DIMENSION).existing_dimension
            if existing:
                return existing
        dims = Counter(c.dimension for c in self.selected if c.dimension)
        return dims.most_common(1)[0][0] if dims else DEFAULT_DIMENSION

    def _collection_problems(self) -> None:
        for c in self.selected:
            if c.layout == "unknown":
                self.problems.append(
                    CollectionProblem(
                        c.name,
                        "unknown_layout",
                        f"{c.name} is not in the ReasoningBank layout ({c.layout_detail})",
                        refused=True,
                    )
                )
            elif c.dimension and c.dimension != self.dimension:
                self.problems.append(
                    CollectionProblem(
                        c.name,
                        "collection_dimension_mismatch",
                        f"{c.name} holds {c.dimension}-d vectors, the target holds {self.dimension}-d",
                        refused=True,
                    )
                )
            if (
                c.space_source == "metadata"
                and c.configured_space
                and c.configured_space != c.space
            ):
                self.problems.append(
                    CollectionProblem(
                        c.name,
                        "space_from_metadata",
                        f"{c.name}: queries use {c.space} (hnsw:space) although the configuration says "
                        f"{c.configured_space}; rbmigrate compares with {c.space}",
                        refused=False,
                    )
                )

    def refused(self, collection: str) -> CollectionProblem | None:
        for p in self.problems:
            if p.collection == collection and p.refused:
                return p
        return None

    def unselected(self) -> list[CollectionInfo]:
        names = {c.name for c in self.selected}
        return [c for c in self.source.collections() if c.name not in names]

    def rules(self, collection: CollectionInfo, *, reembed: bool) -> RuleContext:
        cfg = self.ctx.cfg
        workspaces = frozenset(cfg.source.workspaces) if cfg.source.workspaces else None
        return RuleContext(
            timezone=ZoneInfo(cfg.source.timezone),
            outcome_map=dict(cfg.migration.outcome_map),
            dimension=collection.dimension or self.dimension,
            workspaces=workspaces,
            reembed=reembed,
            trace_time=self.index.trace_time,
        )

    # --- pass 1 ------------------------------------------------------------------------
    def scan(self) -> None:
        """Record every selected memory's trace observation (metadata only, no vectors)."""
        total = sum(c.count for c in self.selected)
        done = 0
        with self.ctx.phase("scan", total=total) as counter:
            for coll in self.selected:
                if self.index.is_scanned(coll.name):
                    done += coll.count
                    continue
                self.index.reset_collection(coll.name)
                rules = self.rules(coll, reembed=False)
                seen = 0
                for page in self.source.read_ahead(
                    coll,
                    after=0,
                    with_embeddings=False,
                    page_size=SCAN_PAGE,
                    metadata_keys=SCAN_KEYS,
                ):
                    self.ctx.checkpoint()
                    batch = []
                    for rec in page:
                        obs = observe(coll.name, rec.id, rec.metadata, rec.position, rules)
                        if is_selected(obs.workspace_id, rules):
                            batch.append((obs, memory_uuid(coll.name, rec.id)[0]))
                    self.index.add(batch)
                    self.index.add_source_ids(coll.name, [rec.id for rec in page])
                    seen += len(page)
                    done += len(page)
                    self.ctx.progress("scan", done, total)
                self.index.mark_scanned(coll.name, seen)
            counter[0] = done
        model = self.ctx.cfg.embedding.model
        with self.ctx.phase("traces", unit="traces") as counter:
            first = self.selected[0] if self.selected else None
            rules = self.rules(first, reembed=False) if first else RuleContext()
            self.trace_warnings = self.index.build_traces(rules, model, self.source.legacy_traces())
            counter[0] = self.index.trace_count()

    def close(self, *, keep_snapshot: bool | None = None) -> None:
        keep = self.ctx.cfg.migration.keep_snapshot if keep_snapshot is None else keep_snapshot
        with contextlib.suppress(Exception):
            self.index.close()
        with contextlib.suppress(Exception):
            self.source.close()
        if self.store is not None:
            self.store.close()
        if self.transport is not None:
            self.transport.close()
        if not keep and self.source.snapshot is not None:
            shutil.rmtree(self.source.snapshot, ignore_errors=True)
            shutil.rmtree(self.ctx.run_dir / "scratch", ignore_errors=True)
            (self.ctx.run_dir / "snapshot.json").unlink(missing_ok=True)
