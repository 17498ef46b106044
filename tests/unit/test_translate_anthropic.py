"""Anthropic Messages translation: wire request -> InferenceRequest, synthetic engine event
streams -> the SSE event sequence of Anthropic's streaming docs, and the message object."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from ollamapy.api.anthropic import (
    MessagesRequest,
    anthropic_error_body,
    anthropic_status,
    is_anthropic_path,
)
from ollamapy.api.decode import decode
from ollamapy.errors import BadRequest, RunnerError, ServerBusy
from ollamapy.inference.events import (
    FLUSH,
    Done,
    Event,
    TextDelta,
    ThinkingDelta,
    ToolCallEvent,
)
from ollamapy.translate import anthropic as tr
from ollamapy.translate.turn import fold

PNG = base64.b64encode(b"\x89PNG fake").decode()


def req(**kw: Any) -> MessagesRequest:
    body = {"model": "m", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
    body.update(kw)
    return decode(MessagesRequest, json.dumps(body).encode())


def test_minimal_request() -> None:
    r = tr.to_inference(req(stop_sequences=["END"], temperature=0.2, top_p=0.9, top_k=5))
    assert r.model == "m"
    assert [(m.role, m.content) for m in r.messages or []] == [("user", "hi")]
    assert r.options == {"num_predict": 64, "temperature": 0.2, "top_p": 0.9, "top_k": 5,
                         "stop": ["END"]}
    assert r.tools is None and r.think is None


def test_unknown_fields_tolerated() -> None:
    r = tr.to_inference(req(metadata={"user_id": "u"}, container="x", context_management={}))
    assert r.model == "m"


@pytest.mark.parametrize("kw,msg", [
    ({"model": ""}, "model is required"),
    ({"max_tokens": 0}, "max_tokens is required and must be positive"),
    ({"messages": []}, "messages is required"),
])
def test_required(kw: dict[str, Any], msg: str) -> None:
    with pytest.raises(BadRequest, match=msg):
        tr.to_inference(req(**kw))


def test_missing_max_tokens() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    with pytest.raises(BadRequest, match="max_tokens is required"):
        tr.to_inference(decode(MessagesRequest, json.dumps(body).encode()))


def test_system_blocks_and_conversation_with_tools() -> None:
    r = tr.to_inference(req(
        system=[{"type": "text", "text": "You are A."},
                {"type": "text", "text": "Be terse.", "cache_control": {"type": "ephemeral"}}],
        messages=[
            {"role": "user", "content": [
                {"type": "text", "text": "look"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                             "data": PNG}}]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                {"type": "redacted_thinking", "data": "opaque"},
                {"type": "text", "text": "calling"},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                 "input": {"city": "Paris"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1",
                 "content": [{"type": "text", "text": "sunny"}]},
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "boom",
                 "is_error": True},
                {"type": "text", "text": "and?"}]},
        ],
        tools=[{"name": "get_weather", "description": "weather",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
        thinking={"type": "enabled", "budget_tokens": 1024}))
    ms = r.messages or []
    assert ms[0].role == "system" and ms[0].content == "You are A.\n\nBe terse."
    assert ms[1].role == "user" and ms[1].content == "look" and ms[1].images == [PNG]
    a = ms[2]
    assert a.role == "assistant" and a.content == "calling" and a.thinking == "hmm"
    assert a.tool_calls and a.tool_calls[0].id == "toolu_1"
    assert a.tool_calls[0].function.name == "get_weather"
    assert a.tool_calls[0].function.arguments == {"city": "Paris"}
    assert (ms[3].role, ms[3].content, ms[3].tool_call_id, ms[3].tool_name) == (
        "tool", "sunny", "toolu_1", "get_weather")
    assert ms[4].content == "Error: boom"
    assert (ms[5].role, ms[5].content) == ("user", "and?")
    assert r.tools and r.tools[0].function.name == "get_weather"
    assert r.tools[0].function.parameters["properties"]["city"]["type"] == "string"
    assert r.think is True


def test_thinking_and_effort() -> None:
    assert tr.to_inference(req(thinking={"type": "disabled"})).think is False
    assert tr.to_inference(req(output_config={"effort": "low"})).think == "low"


def test_relax_think() -> None:
    assert tr.relax_think(True, ("completion",)) is None
    assert tr.relax_think("high", ("completion", "thinking")) == "high"
    assert tr.relax_think(False, ("completion",)) is False


def test_tool_choice() -> None:
    tools = [{"name": "a", "input_schema": {}}, {"name": "b", "input_schema": {}}]
    assert tr.to_inference(req(tools=tools, tool_choice={"type": "none"})).tools is None
    only = tr.to_inference(req(tools=tools, tool_choice={"type": "tool", "name": "b"})).tools
    assert only and [t.function.name for t in only] == ["b"]
    both = tr.to_inference(req(tools=tools, tool_choice={"type": "any"})).tools
    assert both and len(both) == 2
    with pytest.raises(BadRequest, match="not in tools"):
        tr.to_inference(req(tools=tools, tool_choice={"type": "tool", "name": "zzz"}))


def test_bad_blocks() -> None:
    with pytest.raises(BadRequest, match="is not supported"):
        tr.to_inference(req(tools=[{"type": "web_search_20250305", "name": "web_search"}]))
    with pytest.raises(BadRequest, match="content block type 'document' is not supported"):
        tr.to_inference(req(messages=[{"role": "user", "content": [
            {"type": "document", "source": {"type": "base64", "data": PNG}}]}]))
    with pytest.raises(BadRequest, match="Only base64"):
        tr.to_inference(req(messages=[{"role": "user", "content": [
            {"type": "image", "source": {"type": "url", "url": "http://x/y.png"}}]}]))
    with pytest.raises(BadRequest, match="invalid base64"):
        tr.to_inference(req(messages=[{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "data": "!!!"}}]}]))
    with pytest.raises(BadRequest, match="'id'"):
        tr.to_inference(req(messages=[{"role": "assistant", "content": [
            {"type": "tool_use", "name": "x", "input": {}}]}]))
    with pytest.raises(BadRequest):
        decode(MessagesRequest, json.dumps({"model": "m", "max_tokens": 1, "messages": [
            {"role": "robot", "content": "x"}]}).encode())


# ------------------------------------------------------------------ stream sequences


def run(events: list[Event], stops: list[str] | None = None) -> list[tuple[str, dict[str, Any]]]:
    s = tr.MessageStream("msg_1", "m", stops, input_hint=7)
    out = []
    for ev in events:
        out += s.feed(ev)
    return out


def names(seq: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return [n if n != "content_block_delta" else "delta:" + d["delta"]["type"] for n, d in seq]


def test_text_stream_sequence() -> None:
    seq = run([TextDelta("Hel"), FLUSH, TextDelta("lo"),
               Done("stop", prompt_eval_count=11, eval_count=2)])
    assert names(seq) == ["message_start", "content_block_start", "ping", "delta:text_delta",
                          "delta:text_delta", "content_block_stop", "message_delta",
                          "message_stop"]
    start = seq[0][1]["message"]
    assert start["id"] == "msg_1" and start["content"] == [] and start["stop_reason"] is None
    assert start["usage"]["input_tokens"] == 7 and start["usage"]["output_tokens"] == 0
    assert seq[1][1] == {"type": "content_block_start", "index": 0,
                         "content_block": {"type": "text", "text": ""}}
    assert "".join(d["delta"]["text"] for n, d in seq if n == "content_block_delta") == "Hello"
    assert seq[6][1] == {"type": "message_delta",
                         "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                         "usage": {"input_tokens": 11, "output_tokens": 2}}
    # each event is its own `event:`/`data:` pair
    raw = tr.sse_bytes(seq).decode()
    assert raw.startswith("event: message_start\ndata: {")
    assert raw.count("\n\n") == len(seq) and raw.endswith('data: {"type":"message_stop"}\n\n')


def test_thinking_then_text_then_tool_stream() -> None:
    call = ToolCallEvent(name="get_weather", arguments={"city": "Paris", "n": [1, 2]},
                         id="toolu_x")
    seq = run([ThinkingDelta("let me "), ThinkingDelta("see"), TextDelta("Checking."), call,
               Done("stop", eval_count=9)])
    assert names(seq) == [
        "message_start",
        "content_block_start", "ping", "delta:thinking_delta", "delta:thinking_delta",
        "content_block_stop",
        "content_block_start", "delta:text_delta", "content_block_stop",
        "content_block_start", "delta:input_json_delta", "content_block_stop",
        "message_delta", "message_stop"]
    starts = [d for n, d in seq if n == "content_block_start"]
    assert [s["index"] for s in starts] == [0, 1, 2]
    assert starts[0]["content_block"] == {"type": "thinking", "thinking": "", "signature": ""}
    assert starts[2]["content_block"] == {"type": "tool_use", "id": "toolu_x",
                                          "name": "get_weather", "input": {}}
    stops = [d["index"] for n, d in seq if n == "content_block_stop"]
    assert stops == [0, 1, 2]
    # the client assembles the tool input from the input_json_delta fragments
    frags = [d["delta"]["partial_json"] for n, d in seq
             if n == "content_block_delta" and d["index"] == 2]
    assert json.loads("".join(frags)) == {"city": "Paris", "n": [1, 2]}
    assert seq[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_max_tokens_and_stop_sequence() -> None:
    assert run([TextDelta("a"), Done("length")])[-2][1]["delta"] == {
        "stop_reason": "max_tokens", "stop_sequence": None}
    assert run([TextDelta("a"), Done("stop", stop_sequence="END")], ["END"])[-2][1]["delta"] == {
        "stop_reason": "stop_sequence", "stop_sequence": "END"}
    # the template's own stop string is a normal end of turn
    assert run([TextDelta("a"), Done("stop", stop_sequence="<|im_end|>")], ["END"]
               )[-2][1]["delta"]["stop_reason"] == "end_turn"


def test_empty_answer_still_a_valid_sequence() -> None:
    assert names(run([Done("stop")])) == ["message_start", "ping", "message_delta",
                                          "message_stop"]


def test_error_mid_stream() -> None:
    s = tr.MessageStream("msg_1", "m")
    first = s.feed(TextDelta("par"))
    assert first[0][0] == "message_start"
    err = s.error(RunnerError("llama runner process has terminated"))
    assert err == [("error", {"type": "error", "error": {
        "type": "api_error", "message": "llama runner process has terminated"}})]
    assert s.feed(Done()) == []  # nothing after the error


def test_non_stream_message() -> None:
    turn = fold([ThinkingDelta("t1"), ThinkingDelta("t2"), TextDelta("Hi"), TextDelta("!"),
                 ToolCallEvent(name="f", arguments={"x": 1}, id="toolu_9"),
                 Done("stop", prompt_eval_count=5, eval_count=3)])
    m = tr.message_response("msg_2", "m", turn, None)
    assert m == {"id": "msg_2", "type": "message", "role": "assistant", "model": "m",
                 "content": [{"type": "thinking", "thinking": "t1t2", "signature": ""},
                             {"type": "text", "text": "Hi!"},
                             {"type": "tool_use", "id": "toolu_9", "name": "f",
                              "input": {"x": 1}}],
                 "stop_reason": "tool_use", "stop_sequence": None,
                 "usage": {"input_tokens": 5, "cache_creation_input_tokens": 0,
                           "cache_read_input_tokens": 0, "output_tokens": 3}}
    plain = tr.message_response("msg_3", "m", fold([TextDelta("x"), Done("length")]), None)
    assert plain["stop_reason"] == "max_tokens" and plain["content"] == [
        {"type": "text", "text": "x"}]


def test_error_envelope() -> None:
    assert anthropic_error_body(400, "bad") == {
        "type": "error", "error": {"type": "invalid_request_error", "message": "bad"}}
    kinds = {s: anthropic_error_body(s, "")["error"]["type"]
             for s in (401, 403, 404, 413, 429, 500, 503, 529)}
    assert kinds == {401: "authentication_error", 403: "permission_error",
                     404: "not_found_error", 413: "request_too_large",
                     429: "rate_limit_error", 500: "api_error", 503: "overloaded_error",
                     529: "overloaded_error"}
    assert anthropic_status(ServerBusy().status) == 529 and anthropic_status(404) == 404
    assert is_anthropic_path("/v1/messages") and is_anthropic_path("/v1/messages/count_tokens")
    assert not is_anthropic_path("/v1/messagesx") and not is_anthropic_path("/v1/chat")


def test_count_request_and_estimate() -> None:
    r = req(system="sys", tools=[{"name": "a", "input_schema": {"type": "object"}}])
    ir = tr.count_request(r)
    assert ir.tools and ir.messages and ir.messages[0].role == "system"
    assert tr.estimate_tokens(r) >= 1


def test_claude_code_request_shape() -> None:
    """What Claude Code 2.1.332 sends (trimmed from a recorded `claude -p` request): a `system`
    turn inside `messages` (after the user's), cache_control on blocks, adaptive thinking with
    `display`, context_management, output_config.effort, a tool with defer_loading."""
    r = tr.to_inference(req(
        messages=[{"role": "user", "content": [
                      {"type": "text", "text": "<system-reminder>x</system-reminder>\n"},
                      {"type": "text", "text": "say hi"}]},
                  {"role": "system", "content": [
                      {"type": "text", "text": "# Environment\n...",
                       "cache_control": {"type": "ephemeral"}}]}],
        system=[{"type": "text", "text": "You are a Claude agent.",
                 "cache_control": {"type": "ephemeral"}}],
        tools=[{"name": "Read", "description": "Read a file", "input_schema": {
                    "$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
                    "properties": {"file_path": {"type": "string"}}}},
               {"name": "DeferredToolPlaceholder", "description": "d", "defer_loading": True,
                "input_schema": {"type": "object"}}],
        metadata={"user_id": "{\"device_id\":\"d\"}"}, max_tokens=32000,
        thinking={"type": "adaptive", "display": "omitted"},
        context_management={"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        output_config={"effort": "high"}, stream=True))
    assert [(m.role, m.content) for m in r.messages or []] == [
        ("system", "You are a Claude agent."),
        ("user", "<system-reminder>x</system-reminder>\nsay hi"),
        ("system", "# Environment\n...")]
    assert [t.function.name for t in r.tools or []] == ["Read", "DeferredToolPlaceholder"]
    assert r.think is True and r.format is None
    upper = tr.to_inference(req(messages=[{"role": "User", "content": "hi"}]))
    assert [m.role for m in upper.messages or []] == ["user"]  # Ollama lower-cases roles
    with pytest.raises(BadRequest):
        tr.to_inference(req(messages=[{"role": "tool", "content": "hi"}]))


def test_forced_tool_choice_format() -> None:
    tools = [{"name": "a", "input_schema": {"type": "object", "properties": {
                 "q": {"type": "string"}}}}, {"name": "b", "input_schema": {}}]
    anyc = tr.to_inference(req(tools=tools, tool_choice={"type": "any"}))
    assert [o["properties"]["name"] for o in anyc.format["anyOf"]] == [
        {"const": "a"}, {"const": "b"}]
    named = tr.to_inference(req(tools=tools, tool_choice={"type": "tool", "name": "a"}))
    assert named.format == {"type": "object", "required": ["name", "arguments"], "properties": {
        "name": {"const": "a"},
        "arguments": {"type": "object", "properties": {"q": {"type": "string"}}}}}
    assert tr.to_inference(req(tools=tools, tool_choice={"type": "auto"})).format is None
    assert tr.to_inference(req(tools=tools)).format is None
