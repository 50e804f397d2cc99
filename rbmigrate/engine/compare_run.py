"""The compare command: one query side by side, or a parity report over sampled memories."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rbmigrate.embeddings import Embedder, shared_embedder
from rbmigrate.engine.compare import (
    ChromaSide,
    Hit,
    RestTargetSide,
    TargetSide,
    Vector,
    check_k,
    check_query,
    overlap,
    percentile,
    rank_agreement,
    recall_up_to_ties,
    target_side,
    timed,
)
from rbmigrate.engine.context import RunContext
from rbmigrate.engine.session import Session
from rbmigrate.errors import ConfigError, ExitCode, SchemaError, SourceError, VerificationFailed
from rbmigrate.source import CollectionInfo

WORST = 5
ALL = "(all)"  # the parity group queried without a workspace filter


@dataclass
class CompareOptions:
    query: str | None = None
    k: int = 5
    parity: int | None = None
    exact: bool = False
    domain: str | None = None
    seed: int = 7


def _workspace(ctx: RunContext) -> str | None:
    chosen = ctx.cfg.source.workspaces
    if len(chosen) > 1:
        raise ConfigError(
            f"compare filters by one workspace; got {len(chosen)} ({', '.join(chosen)}).",
            hint="pass --workspace once, or not at all to search every workspace.",
        )
    if chosen and not chosen[0]:
        raise ConfigError(
            "compare cannot filter on records without a workspace ('').",
            hint="pass a workspace id, or omit --workspace to search every workspace.",
        )
    return chosen[0] if chosen else None


def _collections(session: Session) -> list[CollectionInfo]:
    usable = [c for c in session.selected if session.refused(c.name) is None]
    if not usable:
        raise SourceError(
            "there is no ReasoningBank memory collection to compare.",
            hint="name the collection with --collection.",
        )
    return usable


def _check_model(embedder: Embedder, session: Session, collections: list[CollectionInfo]) -> None:
    for info in collections:
        if info.dimension:
            embedder.check_dimension(info.dimension, f"the collection {info.name!r}")
    existing = session.schema.existing_dimension if session.schema else None
    if existing:
        embedder.check_dimension(existing, "the target's memory_items table")


def _check_workspace(
    target: TargetSide | RestTargetSide, names: list[str], workspace: str | None
) -> None:
    if workspace is None:
        return
    known = target.workspaces(names)
    if workspace not in known:
        shown = ", ".join(known[:10]) + (" …" if len(known) > 10 else "")
        raise ConfigError(
            f"the workspace {workspace!r} has no memories in the target "
            f"(workspaces: {shown or 'none'}).",
            title="Unknown workspace",
            hint="pick one of the listed workspaces, or omit --workspace.",
        )


def compare_body(ctx: RunContext, report: dict[str, Any], opts: CompareOptions) -> ExitCode:
    k = check_k(opts.k)
    if opts.parity is None:
        query = check_query(opts.query)
    elif opts.parity < 1:
        raise ConfigError(f"--parity must be at least 1; got {opts.parity}.")
    workspace = _workspace(ctx)
    session = Session.open(ctx)
    try:
        report["source"] = session.source.describe()
        report["target"] = session.store.describe() if session.store else None
        if session.schema is None or not session.schema.existing_dimension:
            raise SchemaError(
                "the target has no ReasoningBank tables to search.",
                hint="migrate first: rbmigrate --headless",
            )
        assert session.store is not None
        collections = _collections(session)
        embedder = shared_embedder(ctx.cfg)
        with ctx.phase("model", unit="steps"):
            _check_model(embedder, session, collections)
        target = target_side(session.store)
        names = [c.name for c in collections]
        _check_workspace(target, names, workspace)
        chroma = ChromaSide(session.source, collections)
        try:
            if opts.parity is None:
                with ctx.phase("compare", unit="queries") as done:
                    result = compare_one(embedder, chroma, target, query, k, workspace, opts)
                    done[0] = 1
            else:
                result = parity(ctx, embedder, chroma, target, names, workspace, k, opts)
        finally:
            chroma.close()
        report["compare"] = result
        if opts.parity is not None and opts.exact and result["recall_at_k_min"] < 1.0:
            raise VerificationFailed(
                f"exact search on the target missed results Chroma returned "
                f"(recall@{k} min {result['recall_at_k_min']:.3f}).",
                hint="see compare.worst in the report: those memories differ between the stores; "
                "rbmigrate --headless verify tells which.",
            )
        return ExitCode.OK
    finally:
        session.close()


def _warm(
    chroma: ChromaSide, target: TargetSide | RestTargetSide, vector: Vector, k: int, exact: bool
) -> None:
    """The first query loads Chroma's index and plans the function: not a latency to report."""
    chroma.search(vector, k, None, None)
    target.search(vector, k, None, None, exact)


def compare_one(
    embedder: Embedder,
    chroma: ChromaSide,
    target: TargetSide | RestTargetSide,
    query: str,
    k: int,
    workspace: str | None,
    opts: CompareOptions,
) -> dict[str, Any]:
    vector = embedder.encode([query])[0]
    _warm(chroma, target, vector, k, opts.exact)
    left, chroma_ms = timed(chroma.search, vector, k, workspace, opts.domain)
    right, target_ms = timed(target.search, vector, k, workspace, opts.domain, opts.exact)
    return {
        "query": query,
        "k": k,
        "workspace": workspace,
        "domain": opts.domain,
        "exact": opts.exact,
        "chroma": [h.as_dict() for h in left],
        "target": [h.as_dict() for h in right],
        "overlap_at_k": round(overlap(left, right), 6),
        "rank_agreement": round(rank_agreement(left, right), 6),
        "latency_ms": {"chroma": round(chroma_ms, 3), "target": round(target_ms, 3)},
    }


@dataclass
class _Query:
    group: str
    source_id: str
    text: str
    recall: float = 0.0
    missing: list[Hit] | None = None


def parity(
    ctx: RunContext,
    embedder: Embedder,
    chroma: ChromaSide,
    target: TargetSide | RestTargetSide,
    names: list[str],
    workspace: str | None,
    k: int,
    opts: CompareOptions,
) -> dict[str, Any]:
    """N sampled memories per workspace, their texts as queries, filtered to that workspace."""
    assert opts.parity is not None
    groups: list[str | None] = [workspace] if workspace else [*target.workspaces(names), None]
    queries: list[_Query] = []
    for group in groups:
        for sid, text in target.sample(names, group, opts.parity, opts.seed):
            queries.append(_Query(group or ALL, sid, text))
    if not queries:
        raise SourceError("the target holds no memories to sample queries from.")
    with ctx.phase("embed queries", len(queries), unit="queries") as done:
        vectors = embedder.encode([q.text for q in queries])
        done[0] = len(queries)
    _warm(chroma, target, vectors[0], k, opts.exact)
    chroma_ms: list[float] = []
    target_ms: list[float] = []
    overlaps: list[float] = []
    with ctx.phase("parity", len(queries), unit="queries") as done:
        for i, (q, vector) in enumerate(zip(queries, vectors, strict=True)):
            ws = None if q.group == ALL else q.group
            left, c_ms = timed(chroma.search, vector, k, ws, opts.domain)
            right, t_ms = timed(target.search, vector, k, ws, opts.domain, opts.exact)
            chroma_ms.append(c_ms)
            target_ms.append(t_ms)
            overlaps.append(overlap(left, right))
            q.recall = recall_up_to_ties(left, right)
            found = {h.id for h in right}
            q.missing = [h for h in left if h.id not in found]
            done[0] = i + 1
            ctx.progress("parity", i + 1, len(queries), unit="queries")
            ctx.checkpoint()
    recalls = [q.recall for q in queries]
    by_group: dict[str, dict[str, Any]] = {}
    for group in dict.fromkeys(q.group for q in queries):
        mine = [q.recall for q in queries if q.group == group]
        by_group[group] = {
            "queries": len(mine),
            "recall_at_k_mean": round(sum(mine) / len(mine), 6),
            "recall_at_k_min": round(min(mine), 6),
        }
    worst = sorted(queries, key=lambda q: (q.recall, q.group, q.source_id))[:WORST]
    return {
        "queries": len(queries),
        "k": k,
        "exact": opts.exact,
        "seed": opts.seed,
        "recall_at_k_mean": round(sum(recalls) / len(recalls), 6),
        "recall_at_k_min": round(min(recalls), 6),
        "overlap_at_k_mean": round(sum(overlaps) / len(overlaps), 6),
        "by_workspace": by_group,
        "worst": [
            {
                "workspace": q.group,
                "source_id": q.source_id,
                "query": q.text.split("\n", 1)[0][:120],
                "recall_at_k": round(q.recall, 6),
                "missing": [h.source_id for h in (q.missing or [])][:k],
            }
            for q in worst
            if q.recall < 1.0
        ],
        "latency_ms": {
            side: {
                "p50": round(percentile(values, 50), 3),
                "p95": round(percentile(values, 95), 3),
                "mean": round(sum(values) / len(values), 3),
            }
            for side, values in (("chroma", chroma_ms), ("target", target_ms))
        },
    }
