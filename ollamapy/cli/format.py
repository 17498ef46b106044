"""Ollama's CLI formatting (format.HumanBytes, format.HumanTime, tablewriter layout), in one place
so every command prints sizes, ages and tables exactly like the Ollama CLI."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

import click

KB = 1000
MB = KB * 1000
GB = MB * 1000
TB = GB * 1000

TABLE_PADDING = "    "


def human_bytes(n: int | float) -> str:
    """Decimal units like Ollama: '135 B', '1.5 KB', '98 MB', '4.7 GB'."""
    n = int(n)
    if n >= TB:
        value, unit = n / TB, "TB"
    elif n >= GB:
        value, unit = n / GB, "GB"
    elif n >= MB:
        value, unit = n / MB, "MB"
    elif n >= KB:
        value, unit = n / KB, "KB"
    else:
        return f"{n} B"
    if value >= 10:
        return f"{int(value)} {unit}"
    if value != math.trunc(value):
        return f"{value:.1f} {unit}"
    return f"{int(value)} {unit}"


def human_duration(seconds: float) -> str:
    """Go's format.humanDuration: 'Less than a second', 'About a minute', '3 days'."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = _go_round(seconds / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{hours // 24 // 365} years"


def _go_round(x: float) -> int:
    """math.Round: half away from zero (Python's round() is banker's)."""
    return math.floor(x + 0.5) if x >= 0 else -math.floor(-x + 0.5)


def _go_div(a: int, b: int) -> int:
    """Go integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def _human(dt: datetime | None, zero: str, now: datetime | None) -> str:
    if dt is None:
        return zero
    now = _aware(now or datetime.now(UTC))
    delta = (now - _aware(dt)).total_seconds()
    if _go_div(_go_div(int(delta / 3600), 24), 365) < -20:
        return "Forever"
    if delta < 0:
        return human_duration(-delta) + " from now"
    return human_duration(delta) + " ago"


def human_time(dt: datetime | None, zero: str = "Never", now: datetime | None = None) -> str:
    """'2 hours ago', 'About a minute ago' (format.HumanTime)."""
    return _human(dt, zero, now)


def human_until(dt: datetime | None, zero: str = "Never", now: datetime | None = None) -> str:
    """'4 minutes from now', or 'Forever' for times decades ahead (keep_alive < 0)."""
    return _human(dt, zero, now)


def parse_time(value: str | None) -> datetime | None:
    """An RFC 3339 timestamp from the API (Go writes up to 9 fraction digits) -> datetime."""
    if not value:
        return None
    v = value.strip()
    if v.endswith("Z"):
        v = v[:-1] + "+00:00"
    # Trim fractional seconds to 6 digits; fromisoformat takes at most microseconds.
    if "." in v:
        head, rest = v.split(".", 1)
        i = 0
        while i < len(rest) and rest[i].isdigit():
            i += 1
        frac, tz = rest[:i], rest[i:]
        v = f"{head}.{frac[:6].ljust(6, '0')}{tz}" if frac else head + tz
    try:
        dt = datetime.fromisoformat(v)
    except ValueError:
        return None
    if dt.year <= 1:
        return None  # Go's zero time
    return dt


def table_lines(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    """tablewriter with Ollama's settings: no borders, left aligned, 4-space column padding."""
    data = [[str(c) for c in headers]] + [[str(c) for c in r] for r in rows]
    ncol = max(len(r) for r in data)
    widths = [0] * ncol
    for r in data:
        for i, c in enumerate(r):
            widths[i] = max(widths[i], _width(c))
    out = []
    for r in data:
        cells = [c + " " * (widths[i] - _width(c)) for i, c in enumerate(r)]
        out.append(TABLE_PADDING.join(cells).rstrip())
    return out


def print_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    for line in table_lines(headers, rows):
        click.echo(line)


def wrap_cell(text: str, width: int) -> list[str]:
    """tablewriter's WrapString: split on spaces into lines of at most `width` (long words stay)."""
    words = text.split()
    if not words:
        return [""]
    lines, cur = [], words[0]
    for w in words[1:]:
        if _width(cur) + 1 + _width(w) <= width:
            cur += " " + w
        else:
            lines.append(cur)
            cur = w
    lines.append(cur)
    return lines


def rows_lines(rows: Iterable[Sequence[object]], col_width: int = 30) -> list[str]:
    """A header-less table (show's sections): cells wrapped at col_width, 4-space padding."""
    wrapped: list[list[list[str]]] = []
    for r in rows:
        cells = [wrap_cell(str(c), col_width) if _width(str(c)) > col_width else [str(c)]
                 for c in r]
        wrapped.append(cells)
    if not wrapped:
        return []
    ncol = max(len(r) for r in wrapped)
    widths = [0] * ncol
    for r in wrapped:
        for i, cell in enumerate(r):
            widths[i] = max([widths[i], *(_width(x) for x in cell)])
    out = []
    for r in wrapped:
        height = max(len(c) for c in r)
        for k in range(height):
            parts = [(c[k] if k < len(c) else "") for c in r]
            out.append(TABLE_PADDING.join(
                p + " " * (widths[i] - _width(p)) for i, p in enumerate(parts)).rstrip())
    return out


def _width(s: str) -> int:
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in s)
