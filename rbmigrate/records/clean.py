"""Make text and JSON storable in PostgreSQL: no U+0000, no lone surrogates, no NaN.

Pure functions; each reports which rule fired through the `found` set so the caller can
attach warnings without the cleaners knowing about records.
"""

from __future__ import annotations

import math
import re
from typing import Any

from rbmigrate.records.codes import Warn

_SURROGATE = re.compile("[\ud800-\udfff]")
MAX_JSON_DEPTH = 128


class JsonTooDeep(ValueError):
    pass


def clean_text(value: str, found: set[str]) -> str:
    if "\x00" in value:
        found.add(Warn.NUL_REMOVED)
        value = value.replace("\x00", "")
    if _SURROGATE.search(value):
        found.add(Warn.LONE_SURROGATE)
        value = _SURROGATE.sub("\ufffd", value)
    return value


# What a JSON text must contain for its parsed value to need cleaning: an escaped or raw NUL,
# a surrogate escape (paired or lone), NaN/Infinity, or enough brackets to nest too deep.
_SUSPECT = re.compile(r"\\u0000|\x00|\\u[dD][89a-fA-F]|NaN|Infinity")


def json_text_is_clean(text: str) -> bool:
    """True when json.loads(text) is certainly storable as is (most records): skip the walk."""
    if _SUSPECT.search(text):
        return False
    return text.count("{") + text.count("[") <= MAX_JSON_DEPTH


def clean_json(value: Any, found: set[str], depth: int = 0) -> Any:
    """A copy of a JSON-like value that jsonb accepts; raises JsonTooDeep past 128 levels."""
    if depth > MAX_JSON_DEPTH:
        raise JsonTooDeep(f"JSON nests deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, str):
        return clean_text(value, found)
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value + 0.0  # -0.0 -> 0.0: jsonb's numeric has no negative zero
        found.add(Warn.NON_FINITE_JSON)
        return None
    if isinstance(value, dict):
        return {
            clean_text(str(k), found): clean_json(v, found, depth + 1) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [clean_json(v, found, depth + 1) for v in value]
    # anything else (bytes, numpy scalars...) becomes its string form
    found.add(Warn.COERCED_FIELD)
    return clean_text(str(value), found)
