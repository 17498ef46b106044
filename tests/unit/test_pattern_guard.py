"""inference/pattern_guard.py: schema `pattern`s whose grammar llama-server cannot match in
bounded time are a 400 before anything is sent. The refused ones here are the shapes that were
measured to hold llama-server's sampling loop for seconds to minutes per token (module
docstring); the accepted ones are real-world patterns and the shapes measured fast."""

from __future__ import annotations

import pytest

from ollamapy.errors import BadRequest
from ollamapy.inference.pattern_guard import check_pattern, repetition_profile
from ollamapy.inference.sampling import format_fields

SLOW = [
    "^((a{0,20}){0,20}){0,20}$",      # minutes for one token: the report
    "^((a{0,10}){0,10}){0,10}$",      # 13 s per token
    "^(a{0,100}){0,100}$",            # 13 s
    "^(a{0,50}){0,50}$",              # 0.9 s
    "^(((a{0,4}){0,4}){0,4}){0,4}$",  # 2.6 s: four levels
    "^(a*){0,200}$",                  # never answered: a loop that can be empty, repeated
    "^((a*){0,20}){0,20}$",
    "^(?:(?:a{0,20}){0,20}){0,20}$",  # non-capturing groups are groups
    "^((a{0,20}){0,20}){0,20}",       # unanchored, and an unclosed group
    "((a{0,20}){0,20}){0,20}",
    "(((a{0,20}){0,20}){0,20}",
]
FAST = [
    r"^((25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)\.){3}(25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)$",
    r"^[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}$",
    r"^(\w+\s?){1,50}$",              # 0.55 s for 24 tokens
    r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$",
    r"^\d{4}-\d{2}-\d{2}$",
    "^(a{0,1000})$",                  # one level is fast whatever its bound
    "^(a*)*$", "^((a*)*)*$",          # loops of loops are recursive rules: fast
    "^(a{0,32}){0,32}$",              # 0.28 s
    "^(a*){0,16}$",                   # 0.32 s
    "^((a{0,4}){0,4}){0,4}$",         # 0.13 s
    r"[{}]{2,3}\{(x)\}", "a{,5}b{3",  # braces that are not quantifiers
    r"[(]{2}(\[a{0,9}]){0,9}",        # brackets and escapes inside classes
]


@pytest.mark.parametrize("pattern", SLOW)
def test_slow_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(BadRequest, match="nests bounded repetitions too deeply"):
        check_pattern(pattern)


@pytest.mark.parametrize("pattern", FAST)
def test_real_and_fast_patterns_pass(pattern: str) -> None:
    check_pattern(pattern)


def test_profile_is_the_product_of_nested_maxima() -> None:
    assert repetition_profile(r"(\d{1,3}\.){3}") == {1: 3, 2: 9}
    assert repetition_profile("(a{2}|b{0,7}){0,5}c{9}") == {1: 9, 2: 35}
    assert repetition_profile("abc") == {}


def test_every_schema_pattern_is_checked_at_any_depth() -> None:
    """Through `format` (Ollama), response_format / text.format (OpenAI) and forced tool
    calls, every json_schema llama-server gets passes format_fields."""
    slow = {"type": "string", "pattern": SLOW[0]}
    for schema in (slow,
                   {"type": "object", "properties": {"a": {"type": "array", "items": slow}}},
                   {"anyOf": [{"type": "null"}, slow]}):
        with pytest.raises(BadRequest, match="invalid format: pattern"):
            format_fields(schema)
    fine = {"type": "object", "properties": {"pattern": {"type": "string",
                                                         "pattern": FAST[0]}}}
    assert format_fields(fine) == {"json_schema": fine}


def test_hostile_patterns_cost_bounded_work() -> None:
    """The scan runs while planning, on the event loop: nesting past the limit shares one
    profile entry (not one per level), an unclosed `{` looks a short window ahead (not to the
    end), and a schema carries at most MAX_PATTERNS_CHARS of pattern text."""
    from ollamapy.inference.pattern_guard import MAX_DEPTH, MAX_PATTERNS_CHARS, check_schema

    deep = "(" * 5000 + "a{2}" + "){2}" * 5000
    assert len(repetition_profile(deep)) <= MAX_DEPTH + 1
    with pytest.raises(BadRequest):
        check_pattern(deep)
    check_pattern("{" * 20_000 + "a")  # braces, no quantifier: passes
    check_schema({"anyOf": [{"pattern": "a" * 1000}] * (MAX_PATTERNS_CHARS // 1000)})
    with pytest.raises(BadRequest, match="patterns exceed"):
        check_schema({"anyOf": [{"pattern": "a" * 1000}] * (MAX_PATTERNS_CHARS // 1000 + 1)})
