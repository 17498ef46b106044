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


GOLDEN35 = json.loads((Path(__file__).parent / "golden" / "nemotron35_reference.json")
                      .read_text())["expected"]


def tool(name: str, desc: str = "", params: dict[str, Any] | None = None) -> Tool:
    fn: dict[str, Any] = {"name": name, "description": desc}
    if params is not None:
        fn["parameters"] = params
    return Tool(function=fn)


def obj(**props: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props}


F = [call("f")]
EXTRA: dict[str, tuple[list[Message], list[Tool] | None, Any]] = {
    "medium effort": ([m("user", "Hello")], None, "medium"),
    "tool without description": ([m("user", "go")], [tool("ping", "", {
        **obj(host={"type": "string", "description": "Host"}), "required": ["host"]})], None),
    "tool without parameters": ([m("user", "go")], [tool("now", "Current time")], None),
    "tool param without type": ([m("user", "go")],
                                [tool("q", "Query", obj(x={"description": "no type"}))], None),
    "tool param with unhandled keys": ([m("user", "go")], [tool("q", "Query", obj(
        x={"type": "string", "description": "X", "items": ["a", "b"]}))], None),
    "tool without required list": ([m("user", "go")],
                                   [tool("q", "Query", obj(x={"type": "string"}))], None),
    "system message after first turn": ([m("system", "First system"), m("user", "Hi"),
                                         m("system", "Second system"), m("user", "Again")],
                                        None, None),
    "tool message last": ([m("user", "go"), m("assistant", tool_calls=F), m("tool", "result")],
                          None, None),
    "tool run then assistant": ([m("user", "go"), m("assistant", tool_calls=F),
                                 m("tool", "one"), m("tool", "two"), m("assistant", "done"),
                                 m("user", "next")], None, None),
    "two user turns truncates earlier thinking": (
        [m("user", "first"), m("assistant", "answer one", thinking="early reasoning"),
         m("user", "second"), m("assistant", "answer two", thinking="late reasoning")],
        None, None),
    "assistant reasoning with tool call": (
        [m("user", "go"), m("assistant", "calling", thinking="decide", tool_calls=F)],
        None, None),
    "system only no user": ([m("system", "Only system")], None, None),
    "assistant first no user": ([m("assistant", "unprompted"), m("user", "now ask")], None,
                                None),
    "tool message first": ([m("tool", "orphan result")], None, None),
    "multiple tools": ([m("user", "go")], [tool("alpha", "First", obj(a={"type": "string"})),
                                           tool("beta", "Second")], None),
    "tool call multiple arguments": (
        [m("user", "go"), m("assistant", tool_calls=[call("f", one="1", two=2, three=True)])],
        None, None),
    "assistant fully empty": ([m("user", "go"), m("assistant", ""), m("user", "again")], None,
                              None),
    "deep multi turn truncation": (
        [m("user", "u1"), m("assistant", "a1", thinking="t1"), m("user", "u2"),
         m("assistant", "a2", thinking="t2"), m("user", "u3"),
         m("assistant", "a3", thinking="t3")], None, None),
    "content think tags with tool call": (
        [m("user", "go"), m("assistant", "<think>inline</think>after", tool_calls=F)],
        None, None),
}


@pytest.mark.parametrize("name", sorted({**CASES, **EXTRA}))
def test_nemotron35_reference(name: str) -> None:
    msgs, tools, think = {**CASES, **EXTRA}[name]
    r = renderers.get("nemotron-3.5-nano")
    assert r is not None
    assert r.render(msgs, tools, think) == GOLDEN35[name]
