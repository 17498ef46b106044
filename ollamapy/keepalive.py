"""`keep_alive` as Ollama reads it from JSON (api.Duration.UnmarshalJSON).

Numbers are seconds (fractions allowed), strings are Go durations (a bare number string such as
"300" is an error, "0" is fine), negative values mean "keep loaded forever". A request that omits
the field (or sends null) gets None: the scheduler then keeps the runner's current duration.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from ollamapy.errors import BadRequest
from ollamapy.gofmt import format_duration, parse_duration

FOREVER = -1.0
"""Normalised "never expire" value (Ollama stores max int64 nanoseconds)."""


def _go_type_name(value: Any) -> str:
    """The Go type name json.Unmarshal into `any` would give, for Ollama's error text."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, dict):
        return "map[string]interface {}"
    if isinstance(value, list):
        return "[]interface {}"
    return type(value).__name__


def parse_keep_alive(value: Any) -> float | None:
    """JSON keep_alive -> seconds (FOREVER for negative), or None when absent/null.

    Raises BadRequest with Ollama's messages: `time: missing unit in duration "300"`,
    `Unsupported type: 'bool'`.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise BadRequest(f"Unsupported type: '{_go_type_name(value)}'")
    if isinstance(value, int | float):
        seconds = float(value)
        if math.isnan(seconds):
            raise BadRequest("invalid keep_alive: NaN")
        return FOREVER if seconds < 0 else seconds
    if isinstance(value, str):
        try:
            seconds = parse_duration(value)
        except ValueError as e:
            raise BadRequest(str(e)) from None
        return FOREVER if seconds < 0 else seconds
    raise BadRequest(f"Unsupported type: '{_go_type_name(value)}'")


# Go's Duration is int64 nanoseconds: nothing longer exists (~292 years).
MAX_SECONDS = (2**63 - 1) / 1e9


def normalize(seconds: float) -> float:
    """A keep_alive from settings or JSON: negative, infinite or beyond Go's duration range
    -> FOREVER, else itself."""
    if is_forever(seconds):
        return FOREVER
    return seconds


def is_forever(seconds: float) -> bool:
    return seconds < 0 or seconds >= MAX_SECONDS or math.isinf(seconds)


def sort_key(seconds: float) -> float:
    """Eviction order: shortest keep_alive first, forever last."""
    return math.inf if is_forever(seconds) else seconds


# Ollama's "forever" is now + max int64 ns (~292 years); Python datetimes stop at year 9999.
_FOREVER_DELTA = timedelta(days=292 * 365)


def expiry(now: datetime, seconds: float) -> datetime:
    """When a runner idle since `now` with this keep_alive expires (forever -> ~292 years)."""
    if is_forever(seconds):
        return now + _FOREVER_DELTA
    return now + timedelta(seconds=seconds)


def to_json(seconds: float) -> int | str:
    """Serialised back the way Ollama does: forever -> -1, else a Go duration string."""
    if is_forever(seconds):
        return -1
    return format_duration(seconds)
