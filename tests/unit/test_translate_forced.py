"""Forced tool calls: the constrained JSON answer becomes a tool-call event (and through the
Anthropic / Responses stream converters a tool_use block / function_call item)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from ollamapy.inference.events import Done, Event, TextDelta, ThinkingDelta, ToolCallEvent
from ollamapy.translate import anthropic as anth
from ollamapy.translate.forced import forced_call, parse_call


async def _gen(events: list[Event]) -> AsyncIterator[Event]:
    for e in events:
        yield e


def run(events: list[Event], names: list[str]) -> list[Event]:
    async def go() -> list[Event]:
        return [e async for e in forced_call(_gen(events), names)]
    return asyncio.run(go())


def test_constrained_text_becomes_a_call() -> None:
    out = run([ThinkingDelta("hmm"), TextDelta('{"name": "get_weather", '),
               TextDelta('"arguments": {"city": "Paris"}}'), Done(done_reason="stop")],
              ["get_weather"])
    assert isinstance(out[0], ThinkingDelta)
    call = out[1]
    assert isinstance(call, ToolCallEvent)
    assert (call.name, call.arguments) == ("get_weather", {"city": "Paris"})
    assert call.id.startswith("call_") and isinstance(out[2], Done) and len(out) == 3
    sse = anth.MessageStream("msg_1", "m")
    events = [ev for e in out for ev in sse.feed(e)]
    assert [n for n, _ in events if n == "content_block_start"][:2]
    delta = next(d for n, d in events if n == "message_delta")
    assert delta["delta"]["stop_reason"] == "tool_use"


def test_parser_call_passes_and_non_call_is_text() -> None:
    engine_call = ToolCallEvent(name="a", arguments={}, id="call_x")
    out = run([engine_call, Done()], ["a"])
    assert out == [engine_call, out[1]] and isinstance(out[1], Done)
    # cut by max_tokens: not a call, the text is given back
    out = run([TextDelta('{"name": "a", "argu'), Done(done_reason="length")], ["a"])
    assert isinstance(out[0], TextDelta) and out[0].text == '{"name": "a", "argu'
    assert parse_call('{"name": "zzz", "arguments": {}}', ["a"]) is None
    assert parse_call('[1]', ["a"]) is None
    assert parse_call('{"name": "a"}', ["a"]) is not None  # arguments default to {}
