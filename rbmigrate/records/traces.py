"""Traces are not Chroma records: rebuild each one from the memories that repeat it.

Task: the longest seen (or traces.json's). Outcome: the earliest memory's (disagreement is
recorded). Timestamp: the earliest. Workspace: the earliest memory's. traces.json, when
present, is the better source for task, trajectory, outcome, metadata and parent.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from rbmigrate.errors import SourceError
from rbmigrate.records.clean import JsonTooDeep, clean_json, clean_text
from rbmigrate.records.codes import Warn
from rbmigrate.records.ids import EPOCH, normalize_outcome, parse_timestamp, trace_uuid
from rbmigrate.records.model import Issue, TraceObservation, TraceRow
from rbmigrate.records.normalize import RuleContext


def _earliest_key(obs: TraceObservation) -> tuple[bool, datetime, str, int]:
    return (obs.timestamp is None, obs.timestamp or EPOCH, obs.collection, obs.position)


def build_trace(
    trace_id: UUID,
    observations: Iterable[TraceObservation],
    legacy: Mapping[str, Any] | None,
    ctx: RuleContext,
) -> TraceRow | None:
    """The trace row, or None when no memory nor traces.json gives it a valid outcome."""
    obs = sorted(observations, key=_earliest_key)
    warnings: list[Issue] = []
    found: set[str] = set()
    metadata: dict[str, Any] = {}
    legacy = legacy or {}

    outcomes = [o.outcome for o in obs if o.outcome is not None]
    legacy_outcome, _ = normalize_outcome(legacy.get("outcome"), dict(ctx.outcome_map))
    outcome = legacy_outcome or (outcomes[0] if outcomes else None)
    if outcome is None:
        return None
    counts = Counter(outcomes)
    if len(counts) > 1:
        warnings.append(
            Issue(Warn.OUTCOME_DISAGREEMENT, f"memories disagree on outcome: {dict(counts)}")
        )
        metadata["outcome_counts"] = dict(sorted(counts.items()))

    task = ""
    for o in obs:
        if len(o.task) > len(task):
            task = o.task
    legacy_task = legacy.get("task")
    if isinstance(legacy_task, str) and legacy_task:
        task = clean_text(legacy_task, found)

    times = [o.timestamp for o in obs if o.timestamp is not None]
    legacy_meta = legacy.get("metadata") if isinstance(legacy.get("metadata"), dict) else {}
    legacy_time = None
    for value in (legacy.get("timestamp"), (legacy_meta or {}).get("timestamp")):
        legacy_time = legacy_time or parse_timestamp(value, ctx.timezone)
    timestamp = min(times) if times else legacy_time
    if timestamp is None:
        warnings.append(
            Issue(Warn.MISSING_TIMESTAMP, "no memory of this trace has a readable time")
        )
        metadata["no_timestamp"] = True
        timestamp = EPOCH

    workspaces = [o.workspace_id for o in obs]
    workspace = workspaces[0] if workspaces else None
    if not obs and legacy_meta:
        ws = legacy_meta.get("workspace_id")
        workspace = str(ws) if ws else None
    if len(set(workspaces)) > 1:
        warnings.append(
            Issue(Warn.WORKSPACE_DISAGREEMENT, "memories of this trace are in several workspaces")
        )
        metadata["workspaces"] = sorted({w or "" for w in workspaces})

    synthetic = bool(obs) and all(o.synthetic for o in obs)
    if synthetic:
        first = obs[0]
        metadata["synthetic"] = {
            "collection": first.collection,
            "memory_source_id": clean_text(first.source_id, set()),  # as the memory stores it
        }
        if not task:
            task = ""
    raw_ids = {o.raw_trace_id for o in obs if o.raw_trace_id is not None}
    source_id = (
        clean_text(sorted(raw_ids)[0], set())
        if raw_ids
        else (str(legacy["id"]) if legacy.get("id") else None)
    )

    trajectory: list[Any] = []
    parent: UUID | None = None
    try:
        if isinstance(legacy.get("trajectory"), list):
            trajectory = clean_json(legacy["trajectory"], found)
        if legacy_meta:
            metadata["traces_json"] = clean_json(legacy_meta, found)
    except JsonTooDeep:
        metadata["traces_json_too_deep"] = True
    raw_parent = legacy.get("parent_trace_id")
    if raw_parent:
        parent = trace_uuid(str(raw_parent))[0]
    for code in sorted(found):
        warnings.append(Issue(code, f"{code} in trace data"))
    return TraceRow(
        id=trace_id,
        task=task,
        trajectory=trajectory,
        outcome=outcome,
        metadata=metadata,
        parent_trace_id=parent,
        timestamp=timestamp.astimezone(UTC),
        num_memories=len(obs),
        workspace_id=workspace,
        source_id=clean_text(source_id, found) if source_id else None,
        warnings=warnings,
    )


def load_traces_json(path: Path) -> dict[UUID, dict[str, Any]]:
    """traces.json as {trace uuid: trace}; a broken file is an error, never ignored."""
    try:
        data = json.loads(path.read_text(encoding="utf-8", errors="surrogateescape"))
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror}.") from None
    except (ValueError, RecursionError) as exc:
        raise SourceError(
            f"{path} is not valid JSON ({exc}).",
            hint="fix the file, or point [source] traces_json at a good copy, or move it away.",
        ) from None
    if isinstance(data, dict) and isinstance(data.get("traces"), list):
        data = data["traces"]
    if not isinstance(data, list):
        raise SourceError(f"{path} must hold a JSON list of traces, not a {type(data).__name__}.")
    out: dict[UUID, dict[str, Any]] = {}
    for index, trace in enumerate(data):
        if not isinstance(trace, dict) or not trace.get("id"):
            raise SourceError(f"{path}: entry {index} is not a trace object with an id.")
        out[trace_uuid(str(trace["id"]))[0]] = trace
    return out
