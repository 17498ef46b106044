"""The `/v1/messages` and `/v1/responses` shells, driven by the official `anthropic` and
`openai` SDKs against an in-process app whose engine is scripted (synthetic event streams, no
runner): the SDKs must parse every sequence, assemble streamed tool calls, and raise the right
error classes from our envelopes and status codes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import anthropic
import httpx
import openai
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from ollamapy.errors import NotFound, OllamaError, PromptTooLong, RunnerError, ServerBusy
from ollamapy.inference import engine
from ollamapy.inference.events import FLUSH, Done, Event, TextDelta, ThinkingDelta, ToolCallEvent
from ollamapy.inference.request import InferenceRequest
from ollamapy.server import metered, middleware
from ollamapy.server.routes import anthropic as anthropic_routes
from ollamapy.server.routes import responses as responses_routes
from tests import sdk_warmup


@pytest.fixture(autouse=True, scope="module")
def _sdk_models_built() -> None:
    sdk_warmup.warm()  # the SDKs' one-time model builds stay out of the watched loop


class Script:
    """The fake engine: yields `events`, raising `fail` after `fail_after` of them."""

    def __init__(self) -> None:
        self.events: list[Event] = [TextDelta("Hello"), Done("stop", prompt_eval_count=3,
                                                             eval_count=1)]
        self.fail: OllamaError | None = None
        self.fail_after = 0
        self.requests: list[InferenceRequest] = []
        self.closed = 0

    async def run(self, _services: object, req: InferenceRequest,
                  watch: Callable[[Event], None] | None = None) -> AsyncIterator[Event]:
        self.requests.append(req)
        try:
            for i, ev in enumerate(self.events):
                if self.fail is not None and i == self.fail_after:
                    raise self.fail
                if watch is not None:
                    watch(ev)
                yield ev
            if self.fail is not None and self.fail_after >= len(self.events):
                raise self.fail
        finally:
            self.closed += 1

    async def count_tokens(self, _services: object, req: InferenceRequest) -> int:
        self.requests.append(req)
        return 42


@pytest.fixture
async def script(monkeypatch: pytest.MonkeyPatch) -> Script:
    s = Script()
    # Both families reach the engine through server/metered.py.
    monkeypatch.setattr(engine, "run", s.run)
    monkeypatch.setattr(metered, "services", lambda request: None)
    monkeypatch.setattr(engine, "count_tokens", s.count_tokens)
    return s


@pytest.fixture
async def base_url(script: Script) -> AsyncIterator[str]:
    app = web.Application(middlewares=[middleware.errors])
    anthropic_routes.setup(app)
    responses_routes.setup(app)
    server = TestServer(app)
    await server.start_server()
    yield str(server.make_url("")).rstrip("/")
    await server.close()


@pytest.fixture
async def claude(base_url: str) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(base_url=base_url, api_key="k", max_retries=0) as c:
        yield c


@pytest.fixture
async def oai(base_url: str) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=base_url + "/v1", api_key="k", max_retries=0) as c:
        yield c


USER = [{"role": "user", "content": "hi"}]
CALL = ToolCallEvent(name="get_weather", arguments={"city": "Paris", "days": 2}, id="toolu_1")
TOOLS: list[Any] = [{"name": "get_weather", "description": "Weather for a city",
                     "input_schema": {"type": "object",
                                      "properties": {"city": {"type": "string"}}}}]


# ------------------------------------------------------------------ Anthropic


async def test_messages_create(claude: anthropic.AsyncAnthropic, script: Script) -> None:
    m = await claude.messages.create(model="m", max_tokens=16, messages=USER,
                                     system="Be terse.", stop_sequences=["END"])
    assert m.id.startswith("msg_") and m.type == "message" and m.role == "assistant"
    assert m.model == "m" and m.stop_reason == "end_turn" and m.stop_sequence is None
    assert [b.type for b in m.content] == ["text"] and m.content[0].text == "Hello"  # type: ignore[union-attr]
    assert m.usage.input_tokens == 3 and m.usage.output_tokens == 1
    req = script.requests[0]
    assert req.options["num_predict"] == 16 and req.options["stop"] == ["END"]
    assert req.messages and req.messages[0].role == "system"


async def test_beta_query_string(claude: anthropic.AsyncAnthropic) -> None:
    m = await claude.beta.messages.create(model="m", max_tokens=16, messages=USER)  # ?beta=true
    assert m.content[0].text == "Hello"  # type: ignore[union-attr]


async def test_stream_thinking_and_tool_call(claude: anthropic.AsyncAnthropic,
                                             script: Script, base_url: str) -> None:
    script.events = [ThinkingDelta("Need "), ThinkingDelta("weather."), FLUSH,
                     TextDelta("Checking."), CALL, Done("stop", prompt_eval_count=9,
                                                        eval_count=5)]
    async with httpx.AsyncClient() as h:  # the SDKs hide `ping`: read the wire itself
        r = await h.post(base_url + "/v1/messages", json={
            "model": "m", "max_tokens": 64, "messages": USER, "tools": TOOLS, "stream": True})
    assert r.headers["content-type"].startswith("text/event-stream")
    frames = [f.split("\n") for f in r.text.split("\n\n") if f]
    kinds = [f[0].removeprefix("event: ") for f in frames]
    assert all(json.loads(f[1].removeprefix("data: "))["type"] == k
               for f, k in zip(frames, kinds, strict=True))
    assert kinds == ["message_start", "content_block_start", "ping", "content_block_delta",
                     "content_block_delta", "content_block_stop", "content_block_start",
                     "content_block_delta", "content_block_stop", "content_block_start",
                     "content_block_delta", "content_block_stop", "message_delta",
                     "message_stop"]
    async with claude.messages.stream(model="m", max_tokens=64, messages=USER,
                                      tools=TOOLS) as s:
        final = await s.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "text", "tool_use"]
    assert final.content[0].thinking == "Need weather."  # type: ignore[union-attr]
    tool = final.content[2]
    assert tool.type == "tool_use" and tool.id == "toolu_1" and tool.name == "get_weather"
    assert tool.input == {"city": "Paris", "days": 2}  # assembled from input_json_delta
    assert final.stop_reason == "tool_use" and final.usage.output_tokens == 5
    assert script.requests[0].tools and script.requests[0].tools[0].function.name == (
        "get_weather")


async def test_tool_result_round_trip(claude: anthropic.AsyncAnthropic, script: Script) -> None:
    script.events = [TextDelta("It is sunny."), Done("stop")]
    m = await claude.messages.create(model="m", max_tokens=32, tools=TOOLS, messages=[
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1",
                                           "name": "get_weather", "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                      "content": "sunny, 21C"}]}])
    assert m.stop_reason == "end_turn"
    msgs = script.requests[0].messages or []
    assert [x.role for x in msgs] == ["user", "assistant", "tool"]
    assert msgs[2].content == "sunny, 21C" and msgs[2].tool_name == "get_weather"


async def test_max_tokens_stop_reason(claude: anthropic.AsyncAnthropic, script: Script) -> None:
    script.events = [TextDelta("a b"), Done("length", eval_count=2)]
    async with claude.messages.stream(model="m", max_tokens=2, messages=USER) as s:
        final = await s.get_final_message()
    assert final.stop_reason == "max_tokens"


async def test_count_tokens(claude: anthropic.AsyncAnthropic, script: Script) -> None:
    r = await claude.messages.count_tokens(model="m", messages=USER, tools=TOOLS,
                                           system="sys")
    assert r.input_tokens == 42
    assert script.requests[0].tools and (script.requests[0].messages or [])[0].role == "system"


async def test_anthropic_errors(claude: anthropic.AsyncAnthropic, script: Script,
                                base_url: str) -> None:
    script.fail = NotFound("model 'nope' not found")
    with pytest.raises(anthropic.NotFoundError) as nf:
        await claude.messages.create(model="nope", max_tokens=8, messages=USER)
    assert nf.value.body == {"type": "error", "error": {
        "type": "not_found_error", "message": "model 'nope' not found"}}
    script.fail = ServerBusy()
    with pytest.raises(anthropic.OverloadedError) as ov:  # 529, which clients retry
        await claude.messages.create(model="m", max_tokens=8, messages=USER, stream=True)
    assert ov.value.status_code == 529
    script.fail = PromptTooLong("the prompt is longer than the context", tokens=5000,
                                limit=2048)
    with pytest.raises(anthropic.BadRequestError) as tl:
        await claude.messages.create(model="m", max_tokens=8, messages=USER)
    assert tl.value.body == {"type": "error", "error": {
        "type": "invalid_request_error",
        "message": "prompt is too long: 5000 tokens > 2048 maximum"}}
    assert script.requests[-1].truncate is False and script.requests[-1].shift is False
    with pytest.raises(anthropic.BadRequestError, match="max_tokens is required"):
        await claude.messages.create(model="m", max_tokens=0, messages=USER)
    # a failure after the stream started is an `error` event, which the SDK raises
    script.fail, script.fail_after = RunnerError("llama runner process has terminated"), 1
    with pytest.raises(anthropic.APIStatusError, match="runner process has terminated"):
        async with claude.messages.stream(model="m", max_tokens=8, messages=USER) as s:
            async for _ in s:
                pass
    assert script.closed == len(script.requests)  # every engine stream was closed


# ------------------------------------------------------------------ Responses


async def test_responses_create(oai: openai.AsyncOpenAI, script: Script) -> None:
    r = await oai.responses.create(model="m", input="hi", instructions="Be terse.",
                                   max_output_tokens=16)
    assert r.object == "response" and r.status == "completed" and r.output_text == "Hello"
    assert r.id.startswith("resp_") and r.usage and r.usage.total_tokens == 4
    assert script.requests[0].options["num_predict"] == 16


async def test_responses_stream_function_call(oai: openai.AsyncOpenAI, script: Script) -> None:
    script.events = [ThinkingDelta("hm"), CALL, Done("stop")]
    stream = await oai.responses.create(model="m", input="Weather in Paris?", stream=True,
                                        tools=[{"type": "function", "name": "get_weather",
                                                "parameters": {"type": "object"},
                                                "strict": False}])
    evs = [ev async for ev in stream]
    assert [e.sequence_number for e in evs] == list(range(len(evs)))
    assert evs[0].type == "response.created" and evs[-1].type == "response.completed"
    args = "".join(e.delta for e in evs if e.type == "response.function_call_arguments.delta")
    assert json.loads(args) == {"city": "Paris", "days": 2}
    final = evs[-1].response  # type: ignore[union-attr]
    calls = [o for o in final.output if o.type == "function_call"]
    assert len(calls) == 1 and calls[0].call_id == "toolu_1" and calls[0].name == "get_weather"
    # round trip: the call and its output come back as input items
    script.events = [TextDelta("Sunny."), Done("stop")]
    r = await oai.responses.create(model="m", input=[
        {"role": "user", "content": "Weather in Paris?"},
        {"type": "function_call", "call_id": calls[0].call_id, "name": calls[0].name,
         "arguments": calls[0].arguments},
        {"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny"}])
    assert r.output_text == "Sunny."
    msgs = script.requests[-1].messages or []
    assert [m.role for m in msgs] == ["user", "assistant", "tool"]


async def test_responses_text_stream_and_incomplete(oai: openai.AsyncOpenAI,
                                                    script: Script) -> None:
    script.events = [TextDelta("Hel"), TextDelta("lo"), Done("stop")]
    async with oai.responses.stream(model="m", input="hi") as s:
        deltas = [e.delta async for e in s if e.type == "response.output_text.delta"]
        final = await s.get_final_response()
    assert "".join(deltas) == "Hello" and final.output_text == "Hello"
    # max_output_tokens reached: status incomplete, terminal event response.incomplete (as
    # OpenAI sends it; the SDK's stream helper only finalizes on response.completed)
    script.events = [TextDelta("Hel"), Done("length")]
    stream = await oai.responses.create(model="m", input="hi", max_output_tokens=1,
                                        stream=True)
    last = [e async for e in stream][-1]
    assert last.type == "response.incomplete"
    assert last.response.status == "incomplete" and last.response.incomplete_details
    assert last.response.incomplete_details.reason == "max_output_tokens"


async def test_responses_json_schema(oai: openai.AsyncOpenAI, script: Script) -> None:
    schema = {"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"],
              "additionalProperties": False}
    script.events = [TextDelta('{"age": 3}'), Done("stop")]
    r = await oai.responses.create(model="m", input="cat age as JSON", text={
        "format": {"type": "json_schema", "name": "cat", "schema": schema, "strict": True}})
    assert json.loads(r.output_text) == {"age": 3}
    assert script.requests[0].format == schema


async def test_responses_errors(oai: openai.AsyncOpenAI, script: Script) -> None:
    with pytest.raises(openai.BadRequestError, match="previous_response_id is not supported"):
        await oai.responses.create(model="m", input="hi", previous_response_id="resp_1")
    with pytest.raises(openai.BadRequestError, match="tool type 'web_search' is not supported"):
        await oai.responses.create(model="m", input="hi", tools=[{"type": "web_search"}])
    script.fail = PromptTooLong("too long", tokens=5000, limit=2048)
    with pytest.raises(openai.BadRequestError, match="exceeds the context window"):
        await oai.responses.create(model="m", input="hi", stream=True)
    assert script.requests[-1].truncate is False
    script.fail = NotFound("model 'nope' not found")
    with pytest.raises(openai.NotFoundError) as nf:
        await oai.responses.create(model="nope", input="hi")
    assert isinstance(nf.value.body, dict) and nf.value.body["type"] == "not_found_error"
    script.fail, script.fail_after = RunnerError("llama runner process has terminated"), 1
    stream = await oai.responses.create(model="m", input="hi", stream=True)
    evs = [ev async for ev in stream]
    assert evs[-1].type == "response.failed"
    assert evs[-1].response.error and "terminated" in evs[-1].response.error.message  # type: ignore[union-attr]


async def test_responses_stream_helper_accumulates(oai: openai.AsyncOpenAI,
                                                   script: Script) -> None:
    """The SDK's own accumulator (`responses.stream`) rebuilds reasoning, text and a function
    call from our events, matching the final response object."""
    script.events = [ThinkingDelta("a"), ThinkingDelta("b"), TextDelta("Calling."), CALL,
                     Done("stop", prompt_eval_count=2, eval_count=3)]
    async with oai.responses.stream(model="m", input="hi", tools=[
            {"type": "function", "name": "get_weather", "parameters": {"type": "object"},
             "strict": False}]) as s:
        final = await s.get_final_response()
    assert [o.type for o in final.output] == ["reasoning", "message", "function_call"]
    assert final.output[0].summary[0].text == "ab"  # type: ignore[union-attr]
    assert final.output_text == "Calling."
    call = final.output[2]
    assert call.type == "function_call"
    assert json.loads(call.arguments) == {"city": "Paris", "days": 2}
