"""OpenAI Responses translation: wire request -> InferenceRequest, synthetic engine event streams
-> the streaming event sequence (sequence_number, item lifecycles), the response object."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from ollamapy.api.decode import decode
from ollamapy.api.responses import ResponsesRequest
from ollamapy.errors import BadRequest, RunnerError
from ollamapy.inference.events import Done, Event, TextDelta, ThinkingDelta, ToolCallEvent
from ollamapy.translate import responses as tr
from ollamapy.translate.turn import fold

PNG = base64.b64encode(b"\x89PNG fake").decode()


def req(**kw: Any) -> ResponsesRequest:
    body: dict[str, Any] = {"model": "m", "input": "hi"}
    body.update(kw)
    return decode(ResponsesRequest, json.dumps(body).encode())


def test_string_input() -> None:
    r = tr.to_inference(req(instructions="Be terse.", max_output_tokens=16, top_p=0.5,
                            store=True, include=["x"], prompt_cache_key="k"))
    assert [(m.role, m.content) for m in r.messages or []] == [
        ("system", "Be terse."), ("user", "hi")]
    assert r.options == {"temperature": 1.0, "num_predict": 16, "top_p": 0.5}


def test_items_round_trip() -> None:
    r = tr.to_inference(req(input=[
        {"role": "developer", "content": "dev rules"},
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "what is "},
            {"type": "input_text", "text": "this?"},
            {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}"}]},
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text",
                                                         "text": "think"}]},
        {"type": "message", "role": "assistant", "content": [
            {"type": "output_text", "text": "Let me check."}]},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather",
         "arguments": "{\"city\": \"Paris\"}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
    ], tools=[{"type": "function", "name": "get_weather", "description": "w",
               "parameters": {"type": "object"}, "strict": True}]))
    ms = r.messages or []
    assert [(m.role, m.content) for m in ms] == [
        ("system", "dev rules"), ("user", "what is this?"), ("assistant", "Let me check."),
        ("tool", "sunny")]
    assert ms[1].images == [PNG]
    assert ms[2].thinking == "think"
    assert ms[2].tool_calls and ms[2].tool_calls[0].id == "call_1"
    assert ms[2].tool_calls[0].function.arguments == {"city": "Paris"}
    assert ms[3].tool_call_id == "call_1" and ms[3].tool_name == "get_weather"
    assert r.tools and r.tools[0].function.name == "get_weather"


def test_reasoning_format_tool_choice() -> None:
    assert tr.to_inference(req(reasoning={"effort": "high"})).think == "high"
    assert tr.to_inference(req(reasoning={"effort": "none"})).think is False
    assert tr.to_inference(req(reasoning={"effort": "minimal"})).think == "low"
    with pytest.raises(BadRequest, match="invalid reasoning value"):
        tr.to_inference(req(reasoning={"effort": "huge"}))
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    assert tr.to_inference(req(text={"format": {"type": "json_schema", "name": "x",
                                                "schema": schema}})).format == schema
    assert tr.to_inference(req(text={"format": {"type": "json_object"}})).format == "json"
    assert tr.to_inference(req(text={"format": {"type": "text"}})).format is None
    tools = [{"type": "function", "name": "a"}, {"type": "function", "name": "b"}]
    assert tr.to_inference(req(tools=tools, tool_choice="none")).tools is None
    assert len(tr.to_inference(req(tools=tools, tool_choice="required")).tools or []) == 2
    one = tr.to_inference(req(tools=tools, tool_choice={"type": "function", "name": "a"}))
    assert [t.function.name for t in one.tools or []] == ["a"]


@pytest.mark.parametrize("kw,msg", [
    ({"previous_response_id": "resp_1"}, "previous_response_id is not supported"),
    ({"conversation": "conv_1"}, "conversation is not supported"),
    ({"model": ""}, "model is required"),
    ({"input": ""}, "input is required"),
    ({"tools": [{"type": "web_search"}]}, "tool type 'web_search' is not supported"),
    ({"tools": [{"type": "function", "name": "a"}], "tool_choice": {"type": "function",
                                                                     "name": "b"}},
     "not in tools"),
    ({"input": [{"type": "item_reference", "id": "x"}]}, "not supported"),
    ({"input": [{"content": "x"}]}, "missing required 'type'"),
    ({"input": [{"type": "function_call", "call_id": "c", "name": "f",
                 "arguments": "{nope"}]}, "not valid JSON"),
    ({"input": [{"role": "user", "content": [{"type": "input_image",
                                              "image_url": "https://x/y.png"}]}]},
     "image URLs are not currently supported"),
    ({"text": {"format": {"type": "json_schema"}}}, "schema"),
])
def test_refusals(kw: dict[str, Any], msg: str) -> None:
    with pytest.raises(BadRequest, match=msg):
        tr.to_inference(req(**kw))


# ------------------------------------------------------------------ stream sequences


def run(events: list[Event], **kw: Any) -> list[dict[str, Any]]:
    s = tr.ResponseStream("resp_1", req(**kw), 1700000000)
    out = []
    for ev in events:
        out += s.feed(ev)
    return out


def test_text_stream_sequence() -> None:
    seq = run([TextDelta("Hel"), TextDelta("lo"), Done("stop", prompt_eval_count=4,
                                                       eval_count=2)])
    assert [e["type"] for e in seq] == [
        "response.created", "response.in_progress", "response.output_item.added",
        "response.content_part.added", "response.output_text.delta",
        "response.output_text.delta", "response.output_text.done",
        "response.content_part.done", "response.output_item.done", "response.completed"]
    assert [e["sequence_number"] for e in seq] == list(range(len(seq)))
    assert seq[0]["response"]["status"] == "in_progress" and seq[0]["response"]["output"] == []
    added = seq[2]["item"]
    assert added["type"] == "message" and added["status"] == "in_progress"
    assert added["id"].startswith("msg_")
    assert {e["item_id"] for e in seq[3:8]} == {added["id"]} == {seq[8]["item"]["id"]}
    assert seq[6]["text"] == "Hello"
    done = seq[-1]["response"]
    assert done["status"] == "completed" and done["id"] == "resp_1"
    assert done["output"] == [{"id": added["id"], "type": "message", "status": "completed",
                               "role": "assistant", "content": [
                                   {"type": "output_text", "text": "Hello", "annotations": [],
                                    "logprobs": []}]}]
    assert done["usage"]["input_tokens"] == 4 and done["usage"]["output_tokens"] == 2
    assert done["usage"]["total_tokens"] == 6 and done["incomplete_details"] is None
    raw = tr.sse_bytes(seq).decode()
    assert raw.startswith("event: response.created\ndata: {")


def test_reasoning_then_function_call_stream() -> None:
    call = ToolCallEvent(name="get_weather", arguments={"city": "Paris"}, id="call_7")
    seq = run([ThinkingDelta("hmm"), call, Done("stop")])
    assert [e["type"] for e in seq] == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta", "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done", "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done",
        "response.completed"]
    fc_added = seq[8]
    assert fc_added["output_index"] == 1
    assert fc_added["item"]["type"] == "function_call"
    assert fc_added["item"]["call_id"] == "call_7" and fc_added["item"]["arguments"] == ""
    args = "".join(e["delta"] for e in seq if e["type"].endswith("arguments.delta"))
    assert json.loads(args) == {"city": "Paris"}
    assert seq[10]["arguments"] == args and seq[10]["name"] == "get_weather"
    out = seq[-1]["response"]["output"]
    assert [o["type"] for o in out] == ["reasoning", "function_call"]
    assert out[0]["summary"] == [{"type": "summary_text", "text": "hmm"}]
    assert out[1]["status"] == "completed" and json.loads(out[1]["arguments"]) == {
        "city": "Paris"}


def test_max_output_tokens_is_incomplete() -> None:
    seq = run([TextDelta("a"), Done("length", eval_count=1)], max_output_tokens=1)
    assert seq[-1]["type"] == "response.incomplete"
    r = seq[-1]["response"]
    assert r["status"] == "incomplete"
    assert r["incomplete_details"] == {"reason": "max_output_tokens"}
    assert r["max_output_tokens"] == 1


def test_failed_mid_stream() -> None:
    s = tr.ResponseStream("resp_1", req(), 1)
    evs = s.feed(TextDelta("x"))
    failed = s.error(RunnerError("llama runner process has terminated"))
    assert [e["type"] for e in failed] == ["response.failed"]
    assert failed[0]["sequence_number"] == len(evs)
    assert failed[0]["response"]["status"] == "failed"
    assert failed[0]["response"]["error"] == {
        "code": "server_error", "message": "llama runner process has terminated"}
    assert s.feed(Done()) == []


def test_non_stream_response() -> None:
    turn = fold([ThinkingDelta("r"), TextDelta("Hi"),
                 ToolCallEvent(name="f", arguments={}, id="call_1"),
                 Done("stop", prompt_eval_count=3, eval_count=2, cached_prompt_tokens=1)])
    r = tr.response_from_turn("resp_2", req(instructions="sys", text={"format": {
        "type": "json_schema", "name": "x", "schema": {"type": "object"}}}), 5, turn)
    assert r["object"] == "response" and r["status"] == "completed" and r["created_at"] == 5
    assert [o["type"] for o in r["output"]] == ["reasoning", "message", "function_call"]
    assert r["output"][1]["content"][0]["text"] == "Hi"
    assert r["output"][2]["call_id"] == "call_1" and r["output"][2]["arguments"] == "{}"
    assert r["usage"]["input_tokens_details"] == {"cached_tokens": 1}
    assert r["instructions"] == "sys" and r["store"] is False
    assert r["text"]["format"] == {"type": "json_schema", "name": "x",
                                   "schema": {"type": "object"}}
    assert r["previous_response_id"] is None


def test_codex_request_shape() -> None:
    """What Codex CLI 0.171 sends (trimmed from a recorded request): developer messages,
    a `namespace` tool of member functions, reasoning summary without effort, include,
    prompt_cache_key, client_metadata, parallel_tool_calls."""
    fn = {"type": "function", "name": "exec_command", "description": "Runs a command",
          "strict": False, "parameters": {"type": "object", "properties": {
              "cmd": {"type": "string"}}, "required": ["cmd"], "additionalProperties": False}}
    ns = {"type": "namespace", "name": "multi_agent_v1", "description": "Sub-agents",
          "tools": [{"type": "function", "name": "close_agent", "description": "Close",
                     "strict": False, "parameters": {"type": "object", "properties": {}}},
                    {"type": "function", "name": "multi_agent_v1.wait_agent",
                     "parameters": {"type": "object"}}]}
    r = tr.to_inference(req(
        input=[{"type": "message", "role": "developer", "content": [
                   {"type": "input_text", "text": "<permissions>...</permissions>"}]},
               {"type": "message", "role": "user", "content": [
                   {"type": "input_text", "text": "say hi"}]}],
        tools=[fn, ns], tool_choice="auto", parallel_tool_calls=True,
        reasoning={"summary": "auto"}, store=False, stream=True,
        include=["reasoning.encrypted_content"], prompt_cache_key="01a2",
        client_metadata={"turn_id": "t"}))
    assert [m.role for m in r.messages or []] == ["system", "user"]
    assert [t.function.name for t in r.tools or []] == [
        "exec_command", "multi_agent_v1.close_agent", "multi_agent_v1.wait_agent"]
    assert r.think is None and r.format is None
    with pytest.raises(BadRequest, match="namespace tool needs a name"):
        tr.to_inference(req(tools=[{"type": "namespace", "tools": [fn]}]))
    with pytest.raises(BadRequest, match="tool type 'web_search' is not supported"):
        tr.to_inference(req(tools=[{"type": "namespace", "name": "n",
                                    "tools": [{"type": "web_search"}]}]))


def test_forced_function_call_format() -> None:
    tools = [{"type": "function", "name": "a", "parameters": {
                 "type": "object", "properties": {"x": {"type": "integer"}}}},
             {"type": "function", "name": "b"}]
    r = tr.to_inference(req(tools=tools, tool_choice="required"))
    assert tr.forced(req(tools=tools, tool_choice="required"))
    assert r.format == {"anyOf": [
        {"type": "object", "required": ["name", "arguments"], "properties": {
            "name": {"const": "a"},
            "arguments": {"type": "object", "properties": {"x": {"type": "integer"}}}}},
        {"type": "object", "required": ["name", "arguments"], "properties": {
            "name": {"const": "b"}, "arguments": {"type": "object"}}}]}
    one = tr.to_inference(req(tools=tools, tool_choice={"type": "function", "name": "b"}))
    assert one.format["properties"]["name"] == {"const": "b"}
    assert tr.to_inference(req(tools=tools, tool_choice="auto")).format is None
    with pytest.raises(BadRequest, match=r"cannot be combined with text\.format"):
        tr.to_inference(req(tools=tools, tool_choice="required",
                            text={"format": {"type": "json_object"}}))
