"""The official `anthropic` SDK against a real `ollamapy serve` with SmolLM2: messages (sync,
stream, max_tokens, stop_sequences), a tool_result round trip rendered through a tools template,
count_tokens from the runner's tokenizer, and Anthropic error shapes (404 model, 400, 401 with
`x-api-key`). Tool *calls* are covered with a scripted runner in
tests/unit/test_agents_engine.py: the 135M model cannot be made to emit one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import pytest

from tests.conftest import (
    FAST_PARAMS,
    ServerProc,
    register_default_model,
    start_server,
    stop_server,
)

pytestmark = pytest.mark.e2e

M = "smollm2:135m"
TOOLS_M = "smollm2-tools:135m"  # the same GGUF with a ChatML tools template (qwen2.5 style)
TEMPLATES = Path(__file__).resolve().parent.parent / "unit" / "templates"
# The SDK dropped temperature/top_k parameters (newer Claude models refuse them); the wire
# fields still exist and Claude Code-era clients send them, so they go as extra body fields.
GREEDY = {"temperature": 0, "top_k": 1}
LONG = [{"role": "user", "content": "Count from 1 to 100, separated by commas."}]
TOOLS = [{"name": "get_weather", "description": "Weather for a city",
          "input_schema": {"type": "object", "required": ["city"],
                           "properties": {"city": {"type": "string"}}}}]


def register_tools_model(models_dir: Path) -> None:
    from ollamapy.store.create import CreateSpec, create_model
    from ollamapy.store.names import ModelName
    from ollamapy.store.store import ModelStore

    create_model(ModelStore(models_dir), ModelName.parse(TOOLS_M), CreateSpec(
        from_=M, template=(TEMPLATES / "qwen2.5.gotmpl").read_text(),
        parameters=dict(FAST_PARAMS)), lambda _p: None)


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    tmp = tmp_path_factory.mktemp("serve")
    register_default_model(tmp / "models", params=FAST_PARAMS)
    register_tools_model(tmp / "models")
    s = start_server(tmp, {"OLLAMA_CONTEXT_LENGTH": "2048"})
    yield s
    stop_server(s)


@pytest.fixture
def client(srv: ServerProc) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=srv.url, api_key="ollama", timeout=120,
                             max_retries=0) as c:
        yield c


def test_create_and_stream_agree(client: anthropic.Anthropic) -> None:
    msgs = [{"role": "user", "content": "Say hello."}]
    m = client.messages.create(model=M, max_tokens=12, messages=msgs, system="You are terse.",
                               extra_body=GREEDY)  # type: ignore[arg-type]
    assert m.id.startswith("msg_") and m.type == "message" and m.role == "assistant"
    assert m.model == M and m.stop_reason in ("end_turn", "max_tokens")
    assert m.content and m.content[0].type == "text" and m.content[0].text
    assert 0 < m.usage.output_tokens <= 12 and m.usage.input_tokens > 0
    with client.messages.stream(model=M, max_tokens=12, messages=msgs,  # type: ignore[arg-type]
                                system="You are terse.", extra_body=GREEDY) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == m.content[0].text == final.content[0].text  # type: ignore[union-attr]
    assert final.stop_reason == m.stop_reason
    assert final.usage.output_tokens == m.usage.output_tokens


def test_max_tokens_and_stop_sequence(client: anthropic.Anthropic) -> None:
    short = client.messages.create(model=M, max_tokens=3, messages=LONG,  # type: ignore[arg-type]
                                   extra_body=GREEDY)
    assert short.stop_reason == "max_tokens" and short.usage.output_tokens == 3
    full = client.messages.create(model=M, max_tokens=24, messages=LONG,  # type: ignore[arg-type]
                                  extra_body=GREEDY)
    text = full.content[0].text  # type: ignore[union-attr]
    assert len(text) > 6, text
    stop = text[4:6]  # a string greedy decoding is known to produce
    cut = client.messages.create(model=M, max_tokens=24, messages=LONG,  # type: ignore[arg-type]
                                 extra_body=GREEDY, stop_sequences=[stop])
    assert cut.stop_reason == "stop_sequence" and cut.stop_sequence == stop
    got = "".join(b.text for b in cut.content if b.type == "text")
    assert got == text[:text.index(stop)]


def test_tool_result_round_trip(client: anthropic.Anthropic) -> None:
    m = client.messages.create(model=TOOLS_M, max_tokens=16, tools=TOOLS, messages=[  # type: ignore[arg-type]
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_01",
                                           "name": "get_weather",
                                           "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01",
                                      "content": [{"type": "text", "text": "Sunny, 22C"}]}]}],
        extra_body=GREEDY)
    assert m.stop_reason in ("end_turn", "max_tokens", "tool_use")
    assert m.content and m.usage.output_tokens > 0
    # streaming the same turn is a well-formed event sequence the SDK accumulates
    with client.messages.stream(model=TOOLS_M, max_tokens=8, tools=TOOLS,  # type: ignore[arg-type]
                                messages=[{"role": "user", "content": "Hi"}]) as s:
        final = s.get_final_message()
    assert final.stop_reason in ("end_turn", "max_tokens", "tool_use")


def test_tool_choice_any_forces_a_call(client: anthropic.Anthropic) -> None:
    """`tool_choice` any / tool: the real model's answer is grammar-constrained to a call."""
    tools = [*TOOLS, {"name": "get_time", "description": "Time in a zone",
                      "input_schema": {"type": "object", "required": ["zone"],
                                       "properties": {"zone": {"type": "string"}}}}]
    m = client.messages.create(model=TOOLS_M, max_tokens=48, tools=tools,  # type: ignore[arg-type]
                               tool_choice={"type": "any"}, extra_body=GREEDY,
                               messages=[{"role": "user", "content": "Weather in Paris?"}])
    assert m.stop_reason == "tool_use"
    call = m.content[-1]
    assert call.type == "tool_use" and call.name in ("get_weather", "get_time")
    assert set(call.input) == {"city" if call.name == "get_weather" else "zone"}
    # greedy too: sampled, the constrained "zone" string may run past max_tokens (seen in CI)
    with client.messages.stream(model=TOOLS_M, max_tokens=48, tools=tools,  # type: ignore[arg-type]
                                tool_choice={"type": "tool", "name": "get_time"},
                                extra_body=GREEDY,
                                messages=[{"role": "user", "content": "Hi"}]) as s:
        final = s.get_final_message()
    assert final.stop_reason == "tool_use"
    block = final.content[-1]
    assert block.type == "tool_use" and block.name == "get_time"
    assert isinstance(block.input, dict) and isinstance(block.input.get("zone"), str)


def test_count_tokens(client: anthropic.Anthropic) -> None:
    small = client.messages.count_tokens(model=M, messages=[{"role": "user", "content": "hi"}])
    big = client.messages.count_tokens(model=TOOLS_M, tools=TOOLS, system="You are terse.",  # type: ignore[arg-type]
                                       messages=[{"role": "user", "content": "hi"}])
    assert 0 < small.input_tokens < big.input_tokens
    # the count is the prompt the model is really given
    m = client.messages.create(model=M, max_tokens=1,
                               messages=[{"role": "user", "content": "hi"}])
    assert m.usage.input_tokens == small.input_tokens


def test_error_shapes(client: anthropic.Anthropic, srv: ServerProc) -> None:
    with pytest.raises(anthropic.NotFoundError) as nf:
        client.messages.create(model="no-such-model", max_tokens=4,
                               messages=[{"role": "user", "content": "hi"}])
    assert nf.value.status_code == 404
    assert nf.value.body == {"type": "error", "error": {
        "type": "not_found_error", "message": "model 'no-such-model' not found"}}
    r = httpx.post(srv.url + "/v1/messages?beta=true", json={
        "model": M, "messages": [{"role": "user", "content": "hi"}]}, timeout=30)
    assert r.status_code == 400 and r.json() == {"type": "error", "error": {
        "type": "invalid_request_error", "message": "max_tokens is required and must be positive"}}
    r = httpx.post(srv.url + "/v1/messages", content=b"{nope", timeout=30)
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


def test_api_key_server(tmp_path: Path) -> None:
    """On an API-key server the SDK's key (it sends `Authorization: Bearer`) and a raw
    `x-api-key` header (Anthropic's own header, what clients configured with an
    ANTHROPIC_API_KEY send) are both accepted; a wrong key is Anthropic's 401."""
    register_default_model(tmp_path / "models", params=FAST_PARAMS)
    s = start_server(tmp_path, {"OLLAMA_API_KEYS": "sekrit", "OLLAMA_CONTEXT_LENGTH": "2048"})
    try:
        with anthropic.Anthropic(base_url=s.url, api_key="wrong", max_retries=0) as bad:
            with pytest.raises(anthropic.AuthenticationError) as e:
                bad.messages.create(model=M, max_tokens=2,
                                    messages=[{"role": "user", "content": "hi"}])
            assert e.value.body == {"type": "error", "error": {
                "type": "authentication_error", "message": "unauthorized"}}
        with anthropic.Anthropic(base_url=s.url, api_key="sekrit", max_retries=0) as good:
            m = good.messages.create(model=M, max_tokens=2,
                                     messages=[{"role": "user", "content": "hi"}])
            assert m.usage.output_tokens > 0
        body = {"model": M, "messages": [{"role": "user", "content": "hi"}]}
        r = httpx.post(s.url + "/v1/messages/count_tokens", json=body,
                       headers={"x-api-key": "sekrit"}, timeout=60)
        assert r.status_code == 200 and r.json()["input_tokens"] > 0
        r = httpx.post(s.url + "/v1/messages/count_tokens", json=body,
                       headers={"x-api-key": "wrong"}, timeout=60)
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    finally:
        stop_server(s)


def test_prompt_too_long_is_anthropics_error(tmp_path: Path) -> None:
    """Over the context the conversation is refused in Anthropic's words (Claude Code compacts on
    it), never cut in the middle."""
    register_default_model(tmp_path / "models", params=FAST_PARAMS)
    s = start_server(tmp_path, {"OLLAMA_CONTEXT_LENGTH": "256"})
    try:
        with anthropic.Anthropic(base_url=s.url, api_key="k", max_retries=0, timeout=120) as c:
            long = " ".join(["word"] * 600)
            for stream in (False, True):
                with pytest.raises(anthropic.BadRequestError) as e:
                    c.messages.create(model=M, max_tokens=4, stream=stream,
                                      messages=[{"role": "user", "content": "hi"},
                                                {"role": "assistant", "content": "hello"},
                                                {"role": "user", "content": long}])
                body = e.value.body
                assert isinstance(body, dict) and body["error"]["type"] == "invalid_request_error"
                msg = body["error"]["message"]
                assert msg.startswith("prompt is too long: ") and msg.endswith(
                    " tokens > 256 maximum"), msg
                assert int(msg.split()[4]) > 256
    finally:
        stop_server(s)
