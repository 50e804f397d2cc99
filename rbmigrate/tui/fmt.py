"""Small text helpers shared by the screens: numbers, durations, bars, masked targets."""

from __future__ import annotations

import re
from typing import Any

from rbmigrate.config import is_env_ref, mask_dsn

BAR_FULL = "━"
BAR_EMPTY = "─"


def num(value: Any) -> str:
    """12345 -> '12,345'; None -> '–'."""
    if value is None:
        return "–"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.1f}"
    return f"{int(value):,}"


def duration(seconds: float | None) -> str:
    """Seconds as m:ss (or h:mm:ss); None -> '–'."""
    if seconds is None:
        return "–"
    s = max(0, round(seconds))
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def rate(per_second: float | None, unit: str = "records") -> str:
    if not per_second:
        return ""
    short = {"records": "rec", "tuples": "tup", "queries": "q"}.get(unit, unit)
    return f"{per_second:,.0f} {short}/s"


def bar(fraction: float | None, width: int = 20) -> str:
    """A text progress bar; an unknown fraction renders as an empty track."""
    if fraction is None:
        return BAR_EMPTY * width
    filled = max(0, min(width, round(fraction * width)))
    return BAR_FULL * filled + BAR_EMPTY * (width - filled)


def shown_target(db_url: str) -> str:
    """A db_url as a screen may show it: env references verbatim, passwords masked."""
    if not db_url:
        return ""
    if is_env_ref(db_url):
        return db_url
    return mask_dsn(db_url)


def yes_no(value: Any) -> str:
    return "yes" if value else "no"


def short_list(items: list[str], limit: int = 4) -> str:
    if len(items) <= limit:
        return ", ".join(items)
    return ", ".join(items[:limit]) + f" … (+{len(items) - limit})"


_PASSWORD = re.compile(r"^[a-z][a-z0-9+.-]*://[^:/@]*:([^@]*)@", re.I)


def merge_dsn(typed: str, real: str) -> str:
    """What a person means by editing a field that showed `real` masked.

    Unchanged text keeps the real value; a URL that still holds the `***` mask keeps the real
    password (say, after changing the host); anything else is taken as typed.
    """
    if typed == shown_target(real):
        return real
    found = _PASSWORD.match(real)
    if found and found.group(1) and ":***@" in typed:
        return typed.replace(":***@", f":{found.group(1)}@", 1)
    return typed
