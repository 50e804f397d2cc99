"""Record model and rules: source record -> normalized memory/trace rows, with codes."""

from rbmigrate.records.codes import Reject, Warn
from rbmigrate.records.hashing import memory_hash, trace_hash
from rbmigrate.records.model import (
    Issue,
    MemoryRow,
    Normalized,
    SourceRecord,
    TraceObservation,
    TraceRow,
)
from rbmigrate.records.normalize import RuleContext, is_selected, normalize, observe
from rbmigrate.records.traces import build_trace, load_traces_json

__all__ = [
    "Issue",
    "MemoryRow",
    "Normalized",
    "Reject",
    "RuleContext",
    "SourceRecord",
    "TraceObservation",
    "TraceRow",
    "Warn",
    "build_trace",
    "is_selected",
    "load_traces_json",
    "memory_hash",
    "normalize",
    "observe",
    "trace_hash",
]
