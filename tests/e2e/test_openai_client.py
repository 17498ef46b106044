"""The official `openai` client against a real `ollamapy serve` with SmolLM2: chat (stream and
not, usage chunk, json response_format), completions, embeddings (float and base64), errors."""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.conftest import ServerProc

pytestmark = pytest.mark.e2e

M = "smollm2:135m"


@pytest.fixture(scope="module")
def srv(inference_server: ServerProc) -> ServerProc:
    return inference_server


@pytest.fixture
def client(srv: ServerProc) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=srv.url + "/v1", api_key="ollama", timeout=120) as c:
        yield c


MSGS = [{"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Say hello."}]


def test_chat(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model=M, messages=MSGS, max_tokens=8, temperature=0,
                                       seed=3)
    assert r.object == "chat.completion" and r.model == M and r.id.startswith("chatcmpl-")
    assert r.choices[0].message.role == "assistant" and r.choices[0].message.content
    assert r.choices[0].finish_reason in ("stop", "length")
    assert 0 < r.usage.completion_tokens <= 8 and r.usage.total_tokens == (
        r.usage.prompt_tokens + r.usage.completion_tokens)
    chunks = list(client.chat.completions.create(
        model=M, messages=MSGS, max_tokens=8, temperature=0, seed=3, stream=True,
        stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len({c.id for c in chunks}) == 1
    finish = chunks[-2]
    assert finish.choices[0].finish_reason == r.choices[0].finish_reason
    assert finish.choices[0].delta.content is None
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == (
        r.usage.completion_tokens)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == r.choices[0].message.content
    # max_tokens bounds the output
    short = client.chat.completions.create(model=M, messages=MSGS, max_tokens=2)
    assert short.usage.completion_tokens <= 2


def test_chat_json_response_format(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model=M, messages=[{"role": "user", "content": "A cat named Tom, age 3, as JSON."}],
        max_tokens=40, temperature=0, response_format={
            "type": "json_schema", "json_schema": {"name": "cat", "schema": {
                "type": "object", "properties": {"age": {"type": "integer"}},
                "required": ["age"]}}})
    assert isinstance(json.loads(r.choices[0].message.content or "")["age"], int)


def test_sse_wire_format(srv: ServerProc) -> None:
    with httpx.Client(timeout=60) as h, h.stream("POST", srv.url + "/v1/chat/completions", json={
            "model": M, "messages": MSGS, "max_tokens": 4, "stream": True}) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        assert resp.headers.get("x-accel-buffering") == "no"
        lines = [ln for ln in resp.iter_lines() if ln]
    assert all(ln.startswith("data: ") for ln in lines) and lines[-1] == "data: [DONE]"


def test_completions(client: openai.OpenAI) -> None:
    r = client.completions.create(model=M, prompt="Once upon a time", max_tokens=6,
                                  temperature=0)
    assert r.object == "text_completion" and r.choices[0].text
    assert r.choices[0].finish_reason in ("stop", "length") and r.usage.completion_tokens <= 6
    chunks = list(client.completions.create(model=M, prompt="Once upon a time", max_tokens=6,
                                            temperature=0, stream=True))
    assert "".join(c.choices[0].text for c in chunks) == r.choices[0].text
    assert chunks[-1].choices[0].finish_reason == r.choices[0].finish_reason


def test_embeddings(client: openai.OpenAI) -> None:
    r = client.embeddings.create(model=M, input=["hello world", "goodbye"])
    assert r.object == "list" and [d.index for d in r.data] == [0, 1]
    assert len(r.data[0].embedding) == 576 and r.usage.prompt_tokens >= 3
    b = client.embeddings.create(model=M, input="hello world", encoding_format="base64")
    raw = base64.b64decode(b.data[0].embedding)  # type: ignore[arg-type]
    vec = struct.unpack(f"<{len(raw) // 4}f", raw)
    assert max(abs(x - y) for x, y in zip(vec, r.data[0].embedding, strict=True)) < 1e-6
    d = client.embeddings.create(model=M, input="hello world", dimensions=32)
    assert len(d.data[0].embedding) == 32


def test_errors(client: openai.OpenAI, srv: ServerProc) -> None:
    with pytest.raises(openai.NotFoundError) as nf:
        client.chat.completions.create(model="no-such-model", messages=MSGS)
    assert nf.value.body["type"] == "not_found_error"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=M, messages=[])
    with pytest.raises(openai.BadRequestError) as br:
        client.embeddings.create(model=M, input="x", encoding_format="int8")  # type: ignore
    assert "encoding_format" in br.value.message
    with httpx.Client(timeout=30) as h:
        r = h.post(srv.url + "/v1/chat/completions", content=b"{not json")
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
