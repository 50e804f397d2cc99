"""The ReasoningBank Chroma layout (DESIGN §2): one record per memory item.

Shared by the demo generator and ChromaStorage, so anything rbmigrate writes to Chroma is
exactly what the upstream server writes, and migrates the same way.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

TASK_LIMIT = 500


def compose_document(item: dict[str, Any]) -> str:
    return f"{item.get('title', '')}\n{item.get('description', '')}\n{item.get('content', '')}"


def chroma_record(
    *,
    trace_id: str,
    task: str,
    outcome: str,
    item: dict[str, Any],
    workspace_id: str | None,
    timestamp: datetime,
) -> tuple[str, str, dict[str, Any]]:
    """(id, document, metadata) for one memory item, as the upstream adapter writes them."""
    metadata: dict[str, Any] = {
        "trace_id": trace_id,
        "task": task[:TASK_LIMIT],
        "outcome": outcome,
        "timestamp": timestamp.isoformat(),
        "memory_data": json.dumps(item),
    }
    if workspace_id:
        metadata["workspace_id"] = workspace_id
    if item.get("domain_category"):
        metadata["domain_category"] = item["domain_category"]
    if item.get("difficulty_level"):
        metadata["difficulty_level"] = item["difficulty_level"]
    if item.get("error_context"):
        metadata["has_error_context"] = True
    return str(item["id"]), compose_document(item), metadata
