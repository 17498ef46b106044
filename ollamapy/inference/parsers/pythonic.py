"""Python-style call lists: LFM2 (`<|tool_call_start|>[f(a=1)]<|tool_call_end|>`, `lfm2`,
`lfm2-thinking`) and Olmo 3 (`<function_calls>f(a=1)</function_calls>`, `olmo3`,
`olmo3-think`)."""

from __future__ import annotations

from ollamapy.inference.parsers._bodies import python_calls_body
from ollamapy.inference.parsers._tagged import Spec, TaggedParser

LFM2_CALL = ("<|tool_call_start|>", "<|tool_call_end|>")
OLMO3_CALL = ("<function_calls>", "</function_calls>")

LFM2 = Spec(parse_body=python_calls_body, tool_open=LFM2_CALL[0], tool_close=LFM2_CALL[1],
            think_open="<think>", think_close="</think>", think_in_content=True)
LFM2_THINKING = Spec(parse_body=python_calls_body, tool_open=LFM2_CALL[0],
                     tool_close=LFM2_CALL[1], think_open="<think>", think_close="</think>",
                     thinking=True, default_thinking=True)
OLMO3 = Spec(parse_body=python_calls_body, tool_open=OLMO3_CALL[0], tool_close=OLMO3_CALL[1])
OLMO3_THINK = Spec(parse_body=python_calls_body, tool_open=OLMO3_CALL[0],
                   tool_close=OLMO3_CALL[1], think_open="<think>", think_close="</think>",
                   thinking=True, default_thinking=True)


def lfm2() -> TaggedParser:
    return TaggedParser(LFM2)


def lfm2_thinking() -> TaggedParser:
    return TaggedParser(LFM2_THINKING)


def olmo3() -> TaggedParser:
    return TaggedParser(OLMO3)


def olmo3_think() -> TaggedParser:
    return TaggedParser(OLMO3_THINK)
