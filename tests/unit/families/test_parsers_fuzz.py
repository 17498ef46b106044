"""Every parser on arbitrary output made of its own tag fragments: never raises, and any split
of the same output gives the same content, thinking and calls as the unsplit output."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ollamapy.inference import parsers
from tests.unit.families.test_parsers import WEATHER, run

PIECES = ["<think>", "</think>", "<tool_call>", "</tool_call>", "<function=get_weather>",
          "<parameter=city>", "</parameter>", "</function>", "{\"name\": \"get_weather\", ",
          "\"arguments\": {\"city\": \"x\"}}", "[TOOL_CALLS]", "[ARGS]", "[THINK]", "[/THINK]",
          "<|start|>assistant", "<|channel|>analysis", "<|channel|>final", "<|message|>",
          "<|end|>", " to=functions.get_weather", "<|tool_call_start|>", "<|tool_call_end|>",
          "[get_weather(city=\"x\")]", "<function_calls>", "</function_calls>",
          "<｜tool▁calls▁begin｜>", "<｜tool▁call▁begin｜>", "<｜tool▁sep｜>",
          "<｜tool▁call▁end｜>", "<｜tool▁calls▁end｜>", "<arg_key>", "</arg_key>",
          "<arg_value>", "</arg_value>", "<|python_tag|>", "{", "}", "<", ">", "\n", " ", "a",
          "hello world", "é", "<|channel>", "thought\n", "<channel|>", "<|tool_call>",
          "<tool_call|>", "call:get_weather{city:", '<|"|>', "<|tool_response>"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(parsers.names()), st.lists(st.sampled_from(PIECES), max_size=14),
       st.lists(st.integers(min_value=0, max_value=10_000), max_size=6),
       st.sampled_from([None, True, False, "high"]))
def test_split_invariant_on_arbitrary_output(name: str, pieces: list[str], cuts: list[int],
                                             think: Any) -> None:
    out = "".join(pieces)
    whole = run(name, [out], WEATHER, think)
    points = sorted({c % (len(out) + 1) for c in cuts})
    chunks = [out[a:b] for a, b in zip([0, *points], [*points, len(out)], strict=True)]
    assert run(name, chunks, WEATHER, think) == whole
