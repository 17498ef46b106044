"""Nemotron 3 Nano against Ollama's reference cases (expected prompts copied verbatim into
golden/nemotron3nano_reference.json from nemotron3nano_reference_test.go, checked there against
the model's own Jinja template)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ollamapy.api.inference import Message, Tool
from ollamapy.inference import renderers

GOLDEN = json.loads((Path(__file__).parent / "golden" / "nemotron3nano_reference.json")
                    .read_text())["expected"]


def m(role: str, content: str = "", **kw: Any) -> Message:
    return Message(role=role, content=content, **kw)


def call(name: str, **args: Any) -> dict[str, Any]:
    return {"function": {"name": name, "arguments": args}}


TOOLS = [Tool(function={"name": "search_docs", "description": "Search docs", "parameters": {
    "type": "object", "$defs": {"shared": {"type": "string"}}, "required": ["query"],
    "properties": {
        "query": {"type": "string", "description": "Search query", "enum": ["api", "cli"]},
        "mode": {"type": ["string", "null"], "description": "Mode",
                 "anyOf": [{"type": "string"}, {"type": "number"}]},
        "payload": {"type": "object", "description": "Payload",
                    "properties": {"enabled": {"type": "boolean"}}, "required": ["enabled"]},
        "tags": {"type": "array", "description": "Tags", "items": {"type": "string"}},
    }}})]
PARIS = [call("get_weather", city="Paris")]

CASES: dict[str, tuple[list[Message], list[Tool] | None, Any]] = {
    "no system default thinking on": ([m("user", "Hello")], None, None),
    "no system explicit thinking off": ([m("user", "Hello")], None, False),
    "literal endthink does not enable thinking": ([m("user", "literal </think> only")], None,
                                                  False),
    "user no think toggle": ([m("user", "Hello /no_think")], None, True),
    "system think toggle overrides false": ([m("system", "Policy /think"), m("user", "Hello")],
                                            None, False),
    "later toggle wins": ([m("system", "Policy /no_think"), m("user", "Actually /think")], None,
                          False),
    "system sanitizes toggles but preserves closing tag": (
        [m("system", "A /think B /no_think C </think>"), m("user", "Hello")], None, False),
    "assistant plain content adds empty think block": (
        [m("user", "Hi"), m("assistant", "Hello there")], None, True),
    "assistant reasoning content": (
        [m("user", "Hi"), m("assistant", "Answer", thinking="Need to think")], None, True),
    "assistant preserves existing think tags": (
        [m("user", "Hi"), m("assistant", "<think>kept</think>Answer")], None, True),
    "tools without system": ([m("user", "Use a tool")], TOOLS, True),
    "system with tools": ([m("system", "Follow policy."), m("user", "Use a tool")], TOOLS, True),
    "assistant tool call with content": (
        [m("user", "Weather?"), m("assistant", "Checking now.", tool_calls=PARIS)], None, True),
    "assistant tool call with structured arguments": (
        [m("user", "Create data"),
         m("assistant", tool_calls=[call("create", payload={"count": 42,
                                                            "nested": {"value": "ok"}},
                                         tags=["a", "b"])])], None, True),
    "assistant tool call truncated with reasoning": (
        [m("user", "Weather?"),
         m("assistant", "Checking now.", thinking="Need weather", tool_calls=PARIS),
         m("user", "And tomorrow?")], None, True),
    "assistant tool call truncated open think only": (
        [m("user", "Weather?"), m("assistant", "<think>draft", tool_calls=PARIS),
         m("user", "And tomorrow?")], None, True),
    "assistant tool call empty content": (
        [m("user", "Weather?"), m("assistant", tool_calls=PARIS)], None, True),
    "assistant truncated with think pair": (
        [m("user", "Hi"), m("assistant", "<think>hidden</think>Visible"), m("user", "Next")],
        None, True),
    "assistant truncated reasoning content": (
        [m("user", "Hi"), m("assistant", "Visible", thinking="hidden"), m("user", "Next")],
        None, True),
    "assistant truncated plain content": (
        [m("user", "Hi"), m("assistant", "Visible"), m("user", "Next")], None, True),
    "assistant truncated empty content": (
        [m("user", "Hi"), m("assistant", ""), m("user", "Next")], None, True),
    "consecutive tool messages grouped": (
        [m("user", "Do work"), m("assistant", tool_calls=[call("step", value=1)]),
         m("tool", "one"), m("tool", "two")], None, True),
    "fallback role": ([m("developer", "Custom role content")], None, True),
}


def test_every_golden_has_a_case() -> None:
    assert set(CASES) == set(GOLDEN)


@pytest.mark.parametrize("name", sorted(CASES))
def test_nemotron3nano_reference(name: str) -> None:
    msgs, tools, think = CASES[name]
    r = renderers.get("nemotron-3-nano")
    assert r is not None
    assert r.render(msgs, tools, think) == GOLDEN[name]


def test_nemotron_images() -> None:
    r = renderers.get("nemotron-3-nano")
    assert r is not None
    assert r.render([m("user", "Describe this image.", images=["aGk="])], None, None) == (
        "<|im_start|>system\n<|im_end|>\n<|im_start|>user\n[img-0] Describe this image."
        "<|im_end|>\n<|im_start|>assistant\n<think>\n")
    assert r.render([m("user", "[img]Describe this image.", images=["aGk="])], None, None) == (
        "<|im_start|>system\n<|im_end|>\n<|im_start|>user\n[img-0]Describe this image."
        "<|im_end|>\n<|im_start|>assistant\n<think>\n")
    assert r.render([m("user", "Describe the first image.", images=["aGk="]),
                     m("assistant", "It shows something."),
                     m("user", "Compare these.", images=["aGk=", "aGk="])], None, None) == (
        "<|im_start|>system\n<|im_end|>\n<|im_start|>user\n[img-0] Describe the first image."
        "<|im_end|>\n<|im_start|>assistant\n<think></think>It shows something.<|im_end|>\n"
        "<|im_start|>user\n[img-1][img-2] Compare these.<|im_end|>\n<|im_start|>assistant\n"
        "<think>\n")
