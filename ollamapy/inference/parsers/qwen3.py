"""Qwen 3 / Qwen3-VL (`qwen3`, `qwen3-thinking`, `qwen3-vl-*`) and the Hermes-style
`<tool_call>{json}</tool_call>` format of Go-template families (`hermes`)."""

from __future__ import annotations

from dataclasses import replace

from ollamapy.inference.parsers._bodies import hermes_body
from ollamapy.inference.parsers._tagged import Spec, TaggedParser

HERMES = Spec(parse_body=hermes_body, tool_open="<tool_call>", tool_close="</tool_call>",
              think_open="<think>", think_close="</think>")
QWEN3_THINKING = replace(HERMES, thinking=True, default_thinking=True)


def hermes() -> TaggedParser:
    return TaggedParser(HERMES)


def qwen3_thinking() -> TaggedParser:
    return TaggedParser(QWEN3_THINKING)
