"""Refuse JSON-schema `pattern`s whose grammar llama-server cannot match in bounded time.

llama-server turns a schema's `pattern` into a grammar in which `x{m,n}` is spelled out as n
nested optional items. Bounded repetitions nested inside each other make that grammar
ambiguous, and its matcher tracks every way of splitting the text so far: one such pattern
(`^((a{0,20}){0,20}){0,20}$`, ~30 bytes) kept llama-server's sampling loop busy for minutes
on one token, ignoring the cancel, and so every other request to that model waited behind it.
Measured per generated token here (llama-server alone, SmolLM2, 1 thread): two levels with a
product of 2,500 took 0.9 s and 10,000 took 13 s; three levels with 125 took 0.4 s and 1,000
took 13 s; four levels of 4 took 2.6 s. Unbounded loops (`(a*)*`) and a single level
(`a{0,1000}`) stay fast: their rules are recursive, not expanded.

So the guard bounds, along every path of nested bounded repetitions (those that allow more
than one item), the product of their maxima: MAX_PRODUCT[depth]; four levels or more are
refused. An unbounded loop inside a bounded repetition counts as a level too (`_loop`).
Real-world patterns sit far below (an IPv4 address: (\\d{1,3}\\.){3} -> 9; "up to 50
words", (\\w+\\s?){1,50} -> 200).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ollamapy.errors import BadRequest

# nesting depth of bounded repetitions -> the largest product of their maxima allowed
MAX_PRODUCT = {1: 1 << 62, 2: 1024, 3: 64}
MAX_DEPTH = max(MAX_PRODUCT)
# The scan runs on the event loop (planning): its work is bounded by the patterns' length.
# Real patterns are tens of bytes; llama-server's converter would choke on huge ones anyway.
MAX_PATTERNS_CHARS = 32 * 1024

Profile = dict[int, int]  # depth of nested bounded repetitions -> largest product at it


def _merge(into: Profile, other: Profile) -> None:
    for d, p in other.items():
        if p > into.get(d, 0):
            into[d] = p


def _repeat(inner: Profile, most: int) -> Profile:
    """The profile of `inner{.., most}` (most > 1, bounded)."""
    out: Profile = {1: most}
    for d, p in inner.items():  # depths past MAX_DEPTH share one entry: the dict stays small
        _merge(out, {min(d + 1, MAX_DEPTH + 1): min(p * most, 1 << 62)})
    return out


def _loop(inner: Profile, weight: int) -> Profile:
    """The profile of an unbounded `inner*` / `inner+`: a recursive rule, so it neither deepens
    nor multiplies what it wraps, but under a bounded repetition it counts as a level of
    `weight` (a loop that may match nothing, `*`, multiplies the ways to split the text far
    more than one that may not, `+`: `(a*){0,200}` never answered, `(a+){0,50}` took 0.3 s)."""
    out = dict(inner)
    _merge(out, {1: weight})
    return out


NULLABLE_LOOP = 64
LOOP = 4
UNBOUNDED = -2


def _quantifier(pattern: str, i: int) -> tuple[int, int, bool]:
    """At `pattern[i]`: (the most repetitions it allows: UNBOUNDED, or -1 when there is no
    quantifier here; the index after it, a lazy/possessive suffix included; whether it allows
    zero repetitions)."""
    n = len(pattern)
    if i >= n:
        return -1, i, False
    c = pattern[i]
    if c in "*+":
        most, least, i = UNBOUNDED, 0 if c == "*" else 1, i + 1
    elif c == "?":
        most, least, i = 1, 0, i + 1
    elif c == "{":
        j = pattern.find("}", i, i + 24)  # `{123,456}`: a short window, so the scan stays linear
        body = pattern[i + 1:j] if j > 0 else ""
        lo, comma, hi = body.partition(",")
        if j < 0 or not lo.strip().isdigit() or (hi.strip() and not hi.strip().isdigit()):
            return -1, i, False  # a literal brace
        least = int(lo)
        most = (int(hi) if hi.strip() else UNBOUNDED) if comma else least
        i = j + 1
    else:
        return -1, i, False
    if i < n and pattern[i] in "?+":
        i += 1
    return most, i, least == 0


def repetition_profile(pattern: str) -> Profile:
    """For each nesting depth of bounded repetitions in `pattern` (a JSON-schema regex), the
    largest product of their maxima. One pass; unbalanced parentheses are tolerated."""
    stack: list[tuple[Profile, Profile]] = []  # (group so far, the last atom before it)
    group: Profile = {}
    last: Profile = {}
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        atom: Profile
        if c == "\\":
            i += 2
            atom = {}
        elif c == "[":
            j = i + 1
            if j < n and pattern[j] == "^":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 2 if pattern[j] == "\\" else 1
            i = j + 1
            atom = {}
        elif c == "(":
            stack.append((group, last))
            group, last = {}, {}
            i += 1
            if pattern.startswith("?", i):  # (?:...), (?=...), (?<name>...), (?P<name>...)
                i += 1
                if pattern.startswith(("<", "P<"), i) and not pattern.startswith(("<=", "<!"), i):
                    close = pattern.find(">", i)
                    i = close + 1 if close > 0 else n
                elif i < n:
                    i += 2 if pattern.startswith(("<=", "<!"), i) else 1
            continue
        elif c == ")":
            _merge(group, last)
            inner = group
            group, last = stack.pop() if stack else ({}, {})
            i += 1
            atom = inner
        elif c == "|":
            _merge(group, last)
            last = {}
            i += 1
            continue
        else:
            i += 1
            atom = {}
        most, i, nullable = _quantifier(pattern, i)
        if most == UNBOUNDED:
            atom = _loop(atom, NULLABLE_LOOP if nullable else LOOP)
        elif most > 1:
            atom = _repeat(atom, most)
        _merge(group, last)
        last = atom
    _merge(group, last)
    while stack:  # an unclosed group: what was read still counts
        outer, before = stack.pop()
        _merge(outer, before)
        _merge(outer, group)
        group = outer
    return group


def check_pattern(pattern: str) -> None:
    prof = repetition_profile(pattern)
    deepest = max(prof, default=0)
    if deepest > MAX_DEPTH or any(p > MAX_PRODUCT[d] for d, p in prof.items()
                                  if d in MAX_PRODUCT):
        shown = pattern if len(pattern) <= 80 else pattern[:77] + "..."
        raise BadRequest(f'invalid format: pattern "{shown}" nests bounded repetitions too '
                         "deeply to be matched in bounded time")


def _patterns(schema: Any) -> Iterator[str]:
    """Every string under a "pattern" key in a JSON value (iterative: any depth)."""
    todo = [schema]
    while todo:
        v = todo.pop()
        if isinstance(v, dict):
            p = v.get("pattern")
            if isinstance(p, str):
                yield p
            todo.extend(v.values())
        elif isinstance(v, list):
            todo.extend(v)


def check_schema(schema: Any) -> None:
    """BadRequest for a schema with a pattern llama-server could not match in bounded time,
    or with more pattern text than MAX_PATTERNS_CHARS."""
    left = MAX_PATTERNS_CHARS
    for p in _patterns(schema):
        left -= len(p)
        if left < 0:
            raise BadRequest(f"invalid format: the schema's patterns exceed {MAX_PATTERNS_CHARS} "
                             "characters")
        check_pattern(p)
