"""`/v1/messages` and `/v1/responses` through the real engine (template rendering, tool-call and
thinking parsers) with a scripted fake llama-server, driven by the official SDKs: a tool call the
model "streams" in pieces arrives as an assembled tool_use / function_call, a tool result round
trip renders into the prompt, thinking becomes thinking blocks / reasoning items. This is where
tools are tested, since the 135M e2e model cannot be made to call one."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anthropic
import openai
import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer

from ollamapy.server import keys, middleware
from ollamapy.server.routes import anthropic as anthropic_routes
from ollamapy.server.routes import responses as responses_routes
from tests import sdk_warmup
from tests.fake_runner import FakeRunner, FakeScheduler, FakeStore, fake_model


@pytest.fixture(autouse=True, scope="module")
def _sdk_models_built() -> None:
    sdk_warmup.warm()  # the SDKs' one-time model builds stay out of the watched loop


HERE = Path(__file__).parent / "templates"
THINK_TMPL = ("{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ if .Thinking }}<think>"
              "{{ .Thinking }}</think>{{ end }}{{ .Content }}<|im_end|>\n{{ end }}"
              "<|im_start|>assistant\n{{ if .Think }}<think>\n{{ end }}")
CALL = ["Let me check.", "<tool", '_call>\n{"name": "get_weather", ',
        '"arguments": {"city": "Paris"}}\n</tool_call>']
A_TOOLS: list[dict[str, object]] = [{
    "name": "get_weather", "description": "Weather for a city",
    "input_schema": {"type": "object", "required": ["city"],
                     "properties": {"city": {"type": "string"}}}}]
R_TOOLS: list[dict[str, object]] = [{
    "type": "function", "name": "get_weather", "description": "Weather for a city",
    "parameters": A_TOOLS[0]["input_schema"], "strict": False}]


@asynccontextmanager
async def agents_app(store: FakeStore, scheduler: FakeScheduler) -> AsyncIterator[str]:
    app = web.Application(middlewares=[middleware.errors])
    app[keys.STORE_KEY] = store  # type: ignore[arg-type]
    app[keys.SCHEDULER_KEY] = scheduler  # type: ignore[arg-type]
    anthropic_routes.setup(app)
    responses_routes.setup(app)
    server = TestServer(app)
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


@pytest.fixture
async def rig() -> AsyncIterator[tuple[str, FakeRunner]]:
    up = await FakeRunner().start()
    session = ClientSession()
    models = {"qwen:latest": fake_model("qwen:latest", (HERE / "qwen2.5.gotmpl").read_text(),
                                        ("completion", "tools")),
              "thinker:latest": fake_model("thinker:latest", THINK_TMPL,
                                           ("completion", "thinking"), digest="1" * 64)}
    try:
        async with agents_app(FakeStore(models), FakeScheduler(session, {"gen": up.url})) as url:
            yield url, up
    finally:
        await up.close()
        await session.close()


async def test_anthropic_tool_use_stream_and_round_trip(rig: tuple[str, FakeRunner]) -> None:
    url, up = rig
    up.pieces = CALL
    async with anthropic.AsyncAnthropic(base_url=url, api_key="k", max_retries=0) as c:
        async with c.messages.stream(model="qwen", max_tokens=64, tools=A_TOOLS,  # type: ignore[arg-type]
                                     messages=[{"role": "user",
                                                "content": "Weather in Paris?"}]) as s:
            final = await s.get_final_message()
        assert '"name":"get_weather"' in up.bodies[-1]["prompt"]
        assert [b.type for b in final.content] == ["text", "tool_use"]
        tool = final.content[1]
        assert tool.type == "tool_use" and tool.name == "get_weather"
        assert tool.input == {"city": "Paris"}
        assert final.stop_reason == "tool_use"
        up.pieces = ["It is 22C in Paris."]
        m = await c.messages.create(model="qwen", max_tokens=64, tools=A_TOOLS, messages=[  # type: ignore[arg-type]
            {"role": "user", "content": "Weather in Paris?"},
            # the call alone: this template renders tool calls only without text content
            {"role": "assistant", "content": [tool.model_dump()]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool.id,
                                          "content": "22C"}]}])
        assert m.content[0].text == "It is 22C in Paris."  # type: ignore[union-attr]
        assert m.stop_reason == "end_turn"
        prompt = up.bodies[-1]["prompt"]
        assert '<tool_call>\n{"name": "get_weather", "arguments": {"city":"Paris"}}' in prompt
        assert "<tool_response>\n22C\n</tool_response>" in prompt


async def test_anthropic_thinking(rig: tuple[str, FakeRunner]) -> None:
    url, up = rig
    up.pieces = ["I should ", "greet.\n</think>\n\n", "Hello!"]
    async with anthropic.AsyncAnthropic(base_url=url, api_key="k", max_retries=0) as c:
        m = await c.messages.create(model="thinker", max_tokens=64,
                                    thinking={"type": "enabled", "budget_tokens": 1024},
                                    messages=[{"role": "user", "content": "hi"}])
    assert [b.type for b in m.content] == ["thinking", "text"]
    assert m.content[0].thinking == "I should greet."  # type: ignore[union-attr]
    assert m.content[1].text == "Hello!"  # type: ignore[union-attr]


async def test_anthropic_count_tokens_uses_the_runner(rig: tuple[str, FakeRunner]) -> None:
    url, up = rig
    async with anthropic.AsyncAnthropic(base_url=url, api_key="k", max_retries=0) as c:
        small = await c.messages.count_tokens(model="qwen", messages=[
            {"role": "user", "content": "hi"}])
        big = await c.messages.count_tokens(model="qwen", tools=A_TOOLS, messages=[  # type: ignore[arg-type]
            {"role": "user", "content": "hi there, what is the weather in Paris today?"}])
    assert 0 < small.input_tokens < big.input_tokens
    assert up.requests["/tokenize"] >= 2 and up.requests["/completion"] == 0


async def test_responses_function_call_and_round_trip(rig: tuple[str, FakeRunner]) -> None:
    url, up = rig
    up.pieces = CALL
    async with openai.AsyncOpenAI(base_url=url + "/v1", api_key="k", max_retries=0) as c:
        stream = await c.responses.create(model="qwen", input="Weather in Paris?",
                                          tools=R_TOOLS, stream=True)  # type: ignore[arg-type]
        evs = [e async for e in stream]
        assert evs[-1].type == "response.completed"
        args = "".join(e.delta for e in evs
                       if e.type == "response.function_call_arguments.delta")
        assert json.loads(args) == {"city": "Paris"}
        out = evs[-1].response.output  # type: ignore[union-attr]
        assert [o.type for o in out] == ["message", "function_call"]
        call = out[1]
        up.pieces = ["22C."]
        r = await c.responses.create(model="qwen", tools=R_TOOLS, input=[  # type: ignore[arg-type]
            {"role": "user", "content": "Weather in Paris?"},
            {"type": "function_call", "call_id": call.call_id, "name": call.name,  # type: ignore[union-attr]
             "arguments": call.arguments},  # type: ignore[union-attr]
            {"type": "function_call_output", "call_id": call.call_id,  # type: ignore[union-attr]
             "output": "22C"}])
        assert r.output_text == "22C."
        assert "<tool_response>\n22C\n</tool_response>" in up.bodies[-1]["prompt"]


async def test_responses_reasoning(rig: tuple[str, FakeRunner]) -> None:
    url, up = rig
    up.pieces = ["Think ", "hard.\n</think>\n\n", "Done."]
    async with openai.AsyncOpenAI(base_url=url + "/v1", api_key="k", max_retries=0) as c:
        r = await c.responses.create(model="thinker", input="hi",
                                     reasoning={"effort": "high"})
    assert [o.type for o in r.output] == ["reasoning", "message"]
    assert r.output[0].summary[0].text == "Think hard."  # type: ignore[union-attr]
    assert r.output_text == "Done."


async def test_anthropic_thinking_relaxed_on_a_non_thinking_model(
        rig: tuple[str, FakeRunner]) -> None:
    """Claude Code sends `thinking` whatever the model; Ollama drops it for this API."""
    url, up = rig
    up.pieces = ["Hi."]
    async with anthropic.AsyncAnthropic(base_url=url, api_key="k", max_retries=0) as c:
        m = await c.messages.create(model="qwen", max_tokens=8,
                                    thinking={"type": "enabled", "budget_tokens": 1024},
                                    messages=[{"role": "user", "content": "hi"}])
    assert [b.type for b in m.content] == ["text"] and m.stop_reason == "end_turn"


async def test_anthropic_stream_estimate_runs_off_the_loop(
        rig: tuple[str, FakeRunner], monkeypatch: pytest.MonkeyPatch) -> None:
    """message_start's token estimate serializes every tool input and schema (O(body) under a
    1 GiB body cap): it must not run on the event loop."""
    import threading

    from ollamapy.translate import anthropic as tr

    url, up = rig
    up.pieces = ["Hi."]
    real, threads = tr.estimate_tokens, []

    def spy(req):  # type: ignore[no-untyped-def]
        threads.append(threading.current_thread())
        return real(req)

    monkeypatch.setattr(tr, "estimate_tokens", spy)
    async with anthropic.AsyncAnthropic(base_url=url, api_key="k", max_retries=0) as c:
        async with c.messages.stream(model="qwen", max_tokens=8,
                                     messages=[{"role": "user", "content": "hi"}]) as s:
            final = await s.get_final_message()
    assert final.content[0].text == "Hi."  # type: ignore[union-attr]
    assert threads and threading.main_thread() not in threads
