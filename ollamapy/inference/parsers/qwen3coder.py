"""Qwen3-Coder's XML tool calls (`qwen3-coder`), and the families that use the same calls
after a `<think>` section (`qwen3.5`, `nemotron-3-nano`)."""

from __future__ import annotations

from ollamapy.inference.parsers._bodies import qwen_xml_body
from ollamapy.inference.parsers._tagged import Spec, TaggedParser

QWEN3_CODER = Spec(parse_body=qwen_xml_body, tool_open="<tool_call>", tool_close="</tool_call>")
THINKING_XML = Spec(parse_body=qwen_xml_body, tool_open="<tool_call>", tool_close="</tool_call>",
                    think_open="<think>", think_close="</think>", thinking=True,
                    default_thinking=True)


def qwen3_coder() -> TaggedParser:
    return TaggedParser(QWEN3_CODER)


def thinking_xml() -> TaggedParser:
    return TaggedParser(THINKING_XML)
