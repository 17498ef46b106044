"""The official `openai` SDK's Responses API (`client.responses.create`) against a real
`ollamapy serve` with SmolLM2: text (sync and stream agree), max_output_tokens -> incomplete, a
function_call / function_call_output round trip rendered through a tools template, json_schema
output, and the OpenAI error envelope for what ollamapy refuses. Function calls *made by the
model* are covered with a scripted runner in tests/unit/test_agents_engine.py."""

from __future__ import annotations

import json
from collections.abc import Iterator

import openai
import pytest

from tests.conftest import (
    FAST_PARAMS,
    ServerProc,
    register_default_model,
    start_server,
    stop_server,
)
from tests.e2e.test_anthropic_sdk import TOOLS_M, register_tools_model

pytestmark = pytest.mark.e2e

M = "smollm2:135m"
TOOLS = [{"type": "function", "name": "get_weather", "description": "Weather for a city",
          "parameters": {"type": "object", "required": ["city"],
                         "properties": {"city": {"type": "string"}}}, "strict": False}]


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    tmp = tmp_path_factory.mktemp("serve")
    register_default_model(tmp / "models", params=FAST_PARAMS)
    register_tools_model(tmp / "models")
    s = start_server(tmp, {"OLLAMA_CONTEXT_LENGTH": "2048"})
    yield s
    stop_server(s)


@pytest.fixture
def client(srv: ServerProc) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=srv.url + "/v1", api_key="ollama", timeout=120,
                       max_retries=0) as c:
        yield c


def test_text_and_stream_agree(client: openai.OpenAI) -> None:
    r = client.responses.create(model=M, input="Say hello.", instructions="You are terse.",
                                max_output_tokens=12, temperature=0)
    assert r.object == "response" and r.id.startswith("resp_") and r.model == M
    assert r.status in ("completed", "incomplete") and r.output_text
    assert r.usage and 0 < r.usage.output_tokens <= 12 and r.usage.input_tokens > 0
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    events = list(client.responses.create(model=M, input="Say hello.", stream=True,
                                          instructions="You are terse.",
                                          max_output_tokens=12, temperature=0))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[0].type == "response.created" and events[1].type == "response.in_progress"
    assert events[-1].type in ("response.completed", "response.incomplete")
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == r.output_text == events[-1].response.output_text  # type: ignore[union-attr]


def test_max_output_tokens_is_incomplete(client: openai.OpenAI) -> None:
    r = client.responses.create(model=M, input="Count from 1 to 100, separated by commas.",
                                max_output_tokens=3, temperature=0)
    assert r.status == "incomplete" and r.incomplete_details
    assert r.incomplete_details.reason == "max_output_tokens"
    assert r.usage and r.usage.output_tokens == 3


def test_function_call_round_trip(client: openai.OpenAI) -> None:
    r = client.responses.create(model=TOOLS_M, tools=TOOLS, max_output_tokens=16,  # type: ignore[arg-type]
                                temperature=0, input=[
        {"role": "user", "content": "What is the weather in Paris?"},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather",
         "arguments": json.dumps({"city": "Paris"})},
        {"type": "function_call_output", "call_id": "call_1", "output": "Sunny, 22C"}])
    assert r.status in ("completed", "incomplete") and r.output
    # streamed with tools offered: a well-formed sequence that ends in a terminal event
    events = list(client.responses.create(model=TOOLS_M, tools=TOOLS, input="Hi",  # type: ignore[arg-type]
                                          max_output_tokens=8, stream=True))
    assert events[-1].type in ("response.completed", "response.incomplete")


def test_tool_choice_required_forces_a_call(client: openai.OpenAI) -> None:
    r = client.responses.create(model=TOOLS_M, tools=TOOLS, max_output_tokens=48,  # type: ignore[arg-type]
                                tool_choice="required", temperature=0,
                                input="Tell me a joke.")
    calls = [o for o in r.output if o.type == "function_call"]
    assert r.status == "completed" and len(calls) == 1
    assert calls[0].name == "get_weather"
    assert set(json.loads(calls[0].arguments)) == {"city"}


def test_json_schema(client: openai.OpenAI) -> None:
    schema = {"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"],
              "additionalProperties": False}
    r = client.responses.create(model=M, input="A cat named Tom, age 3, as JSON.",
                                max_output_tokens=40, temperature=0, text={"format": {
                                    "type": "json_schema", "name": "cat", "schema": schema,
                                    "strict": True}})
    assert isinstance(json.loads(r.output_text)["age"], int)
    assert r.text and r.text.format and r.text.format.type == "json_schema"


def test_refusals_and_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="previous_response_id is not supported"):
        client.responses.create(model=M, input="hi", previous_response_id="resp_123")
    with pytest.raises(openai.BadRequestError, match="tool type 'web_search' is not supported"):
        client.responses.create(model=M, input="hi", tools=[{"type": "web_search"}])
    with pytest.raises(openai.NotFoundError) as nf:
        client.responses.create(model="no-such-model", input="hi")
    body = nf.value.body
    assert isinstance(body, dict) and body["message"] == "model 'no-such-model' not found"
