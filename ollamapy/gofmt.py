"""Go's text forms, in one place: Ollama prints and parses numbers, durations, times and option
strings with Go's strconv/time/fmt, and clients compare the text byte for byte.

- `format_float`: strconv.FormatFloat(f, 'g', -1, 64), which is also fmt's %v of a float64
- `format_value`: fmt's %v of a JSON-decoded value (bools, numbers as float64, strings)
- `duration_string` / `format_duration`: time.Duration.String()
- `parse_duration`: time.ParseDuration
- `format_time`: time.Time as encoding/json marshals it (RFC 3339, trimmed nanoseconds)
- `parse_param`: api.FormatParams for one option (Modelfile PARAMETER, `/set parameter`, create)
"""

from __future__ import annotations

import math
import re
from datetime import datetime

# ---------------------------------------------------------------- floats


def _digits(f: float) -> tuple[str, int]:
    """Shortest round-trip decimal digits of |f| (no leading/trailing zeros) and the position of
    the decimal point (Go's decimalSlice nd/dp): 1234.5 -> ("12345", 4), 0.001 -> ("1", -2).
    Python's repr is the same shortest representation Go's roundShortest/Ryū picks."""
    mant, _, exp_s = repr(abs(f)).partition("e")
    int_part, _, frac = mant.partition(".")
    exp = int(exp_s) if exp_s else 0
    raw = int_part + frac
    stripped = raw.lstrip("0")
    dp = len(int_part) + exp - (len(raw) - len(stripped))
    return stripped.rstrip("0"), dp


def format_float(f: float) -> str:
    """strconv.FormatFloat(f, 'g', -1, 64): shortest digits; %e form when the decimal exponent is
    < -4 or >= 6 (the 'shortest' precision rule in Go's formatDigits), at least two exponent
    digits: 1e6 -> "1e+06", 123456 -> "123456", 1.5e-5 -> "1.5e-05"."""
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    sign = "-" if math.copysign(1.0, f) < 0 else ""
    if f == 0:
        return sign + "0"
    digits, dp = _digits(f)
    exp = dp - 1
    if exp < -4 or exp >= 6:
        m = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{m}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if dp <= 0:
        return f"{sign}0.{'0' * -dp}{digits}"
    if dp >= len(digits):
        return sign + digits + "0" * (dp - len(digits))
    return f"{sign}{digits[:dp]}.{digits[dp:]}"


def format_value(v: object) -> str:
    """fmt's %v of a JSON-decoded value: numbers are float64 in Go (4096 -> "4096")."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return format_float(float(v))
    return str(v)


# ---------------------------------------------------------------- durations

_UNITS = {
    "ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0,
}
_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_BARE_NUMBER = re.compile(r"(\d+\.?\d*|\.\d+)$")


def parse_duration(text: str) -> float:
    """Seconds for a Go duration string such as "5m", "1h30m", "-1s", "0". ValueError if invalid."""
    s = text.strip()
    orig = s
    sign = 1.0
    if s[:1] in "+-" and s:
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if s == "0":
        return 0.0
    if not s:
        raise ValueError(f'time: invalid duration "{orig}"')
    total = 0.0
    pos = 0
    while pos < len(s):
        m = _PART.match(s, pos)
        if not m:
            if _BARE_NUMBER.match(s, pos):
                raise ValueError(f'time: missing unit in duration "{orig}"')
            raise ValueError(f'time: invalid duration "{orig}"')
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    return sign * total


def _frac(value: int, digits: int) -> str:
    whole, rest = divmod(value, 10**digits)
    tail = f"{rest:0{digits}d}".rstrip("0")
    return f"{whole}.{tail}" if tail else str(whole)


def duration_string(ns: int) -> str:
    """time.Duration.String(): `1.234567891s`, `2m3.004s`, `150.123ms`, `850µs`, `0s`."""
    sign = "-" if ns < 0 else ""
    u = abs(int(ns))
    if u == 0:
        return "0s"
    if u < 1_000:
        return f"{sign}{u}ns"
    if u < 1_000_000:
        return f"{sign}{_frac(u, 3)}µs"
    if u < 1_000_000_000:
        return f"{sign}{_frac(u, 6)}ms"
    secs, nanos = divmod(u, 1_000_000_000)
    h, rest = divmod(secs, 3600)
    m, s = divmod(rest, 60)
    out = sign
    if h:
        out += f"{h}h"
    if h or m:
        out += f"{m}m"
    return out + _frac(s * 1_000_000_000 + nanos, 9) + "s"


def format_duration(seconds: float) -> str:
    """time.Duration.String() of a duration given in seconds (300 -> "5m0s")."""
    return duration_string(round(seconds * 1e9))


# ---------------------------------------------------------------- times


def format_time(dt: datetime) -> str:
    """RFC 3339 with the local offset and trimmed fraction, as Go marshals time.Time."""
    s = dt.isoformat(timespec="microseconds")
    base, rest = s[:19], s[19:]
    if rest.startswith("."):
        frac, tz = rest[1:7].rstrip("0"), rest[7:]
        s = base + (f".{frac}" if frac else "") + tz
    return s[:-6] + "Z" if s.endswith("+00:00") else s


# ---------------------------------------------------------------- option strings

_GO_INT = re.compile(r"[+-]?[0-9]+")
_GO_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_GO_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})

ParamValue = int | float | bool | str | list[str]


def parse_param(name: str, values: list[str]) -> ParamValue:
    """api.FormatParams for one option: its strings -> the option's type, with Go's strconv rules
    (ParseInt base 10, ParseFloat, ParseBool) and Go's error texts. ValueError on bad input.
    NaN and infinities are refused: JSON cannot carry them to the runner."""
    from ollamapy.options import OPTIONS  # lazily: this module is stdlib-only at import

    opt = OPTIONS.get(name)
    if opt is None:
        raise ValueError(f"unknown parameter '{name}'")
    if opt.type == "array":
        return list(values)
    shown = "[" + " ".join(values) + "]"
    v = values[0].strip() if values else ""
    if opt.type == "integer":
        if not _GO_INT.fullmatch(v):
            raise ValueError(f"invalid int value {shown}")
        return int(v)
    if opt.type == "float32":
        if not _GO_FLOAT.fullmatch(v):
            raise ValueError(f"invalid float value {shown}")
        return float(v)
    if opt.type == "boolean":
        if v in _GO_TRUE:
            return True
        if v in _GO_FALSE:
            return False
        raise ValueError(f"invalid bool value {shown}")
    return v
