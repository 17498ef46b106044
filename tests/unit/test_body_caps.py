"""Request-body bounds (issue 11): JSON bodies capped (413), large bodies decoded off the loop
with bounded memory, and caps on messages, images and embed inputs (400), all in Ollama's shape."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from ollamapy.api.decode import Caps, _count_values, decode, set_caps
from ollamapy.api.inference import ChatRequest, EmbedRequest
from ollamapy.config import load_settings
from ollamapy.errors import BadRequest, LimitExceeded
from ollamapy.server.app import create_app

SMALL = Caps(max_json_bytes=1000, max_json_objects=50, max_messages=5, max_images=2,
             max_embed_inputs=3, max_json_values=100)


@pytest.fixture(autouse=True)
def _fresh_caps() -> Iterator[None]:
    set_caps(None)
    yield
    set_caps(None)


def test_too_many_messages_is_a_clear_400() -> None:
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": ""}] * 6}).encode()
    with pytest.raises(LimitExceeded, match=r"too many messages: 6 \(limit 5"):
        decode(ChatRequest, body, SMALL)
    assert decode(ChatRequest, json.dumps({"model": "m", "messages": [
        {"role": "user", "content": ""}] * 5}).encode(), SMALL).messages


def test_images_are_counted_across_messages_and_content_parts() -> None:
    body = json.dumps({"model": "m", "messages": [
        {"role": "user", "content": "", "images": ["aGk="]},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}},
                                     {"type": "text", "text": "t"}]},
        {"role": "user", "content": "", "images": ["aGk="]}]}).encode()
    with pytest.raises(LimitExceeded, match="too many images: 3"):
        decode(ChatRequest, body, SMALL)


def test_responses_input_images_count_too() -> None:
    """OLLAMAPY_MAX_IMAGES is the one count of images for every API: the Responses API carries
    them in `input` items, not messages."""
    from ollamapy.api.responses import ResponsesRequest

    part = {"type": "input_image", "image_url": "data:image/png;base64,aGk="}
    body = json.dumps({"model": "m", "input": [
        {"role": "user", "content": [part, {"type": "input_text", "text": "t"}, part]},
        {"role": "user", "content": [part]}]}).encode()
    with pytest.raises(LimitExceeded, match="too many images: 3"):
        decode(ResponsesRequest, body, SMALL)


def test_too_many_embed_inputs() -> None:
    with pytest.raises(LimitExceeded, match="too many inputs: 4"):
        decode(EmbedRequest, json.dumps({"model": "m", "input": ["a"] * 4}).encode(), SMALL)


def test_object_count_is_refused_while_parsing() -> None:
    body = json.dumps({"model": "m", "options": {"x": [{}] * 51}}).encode()
    with pytest.raises(LimitExceeded, match="more than 50 JSON objects"):
        decode(ChatRequest, body, SMALL)


def test_value_count_prescan_ignores_commas_inside_strings() -> None:
    assert _count_values(b'{"a":"x,y,z\\",w","b":[1,2]}') == 3
    # an unterminated string with escaped quotes: still a single linear pass
    assert _count_values(b'"' + b'\\"' * 100_000 + b'\\') == 1


def test_value_prescan_refuses_huge_arrays_of_tiny_strings() -> None:
    body = b'{"model":"m","input":[' + b'"ab",' * 400_000 + b'"ab"]}'
    with pytest.raises(LimitExceeded, match="JSON values"):
        decode(EmbedRequest, body, Caps(max_json_values=100_000))


def test_caps_come_from_env_and_body_cap_folds_in() -> None:
    c = Caps.from_env({"OLLAMAPY_MAX_JSON_BYTES": "5000", "OLLAMAPY_MAX_MESSAGES": "7"})
    assert (c.max_json_bytes, c.max_messages) == (5000, 7)
    c = Caps.from_env({"OLLAMAPY_MAX_BODY_BYTES": "100"})
    assert c.max_json_bytes == 100
    assert Caps.from_env({}).max_json_bytes == 32 * 1024 * 1024


def test_limit_error_is_not_a_bad_request() -> None:
    # routes remap BadRequest to 500 for request templates; limits must stay 400
    assert not issubclass(LimitExceeded, BadRequest) and LimitExceeded("x").status == 400


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient]:
    app = create_app(load_settings({"OLLAMA_MODELS": str(tmp_path / "models"),
                                    "OLLAMAPY_MAX_JSON_BYTES": "100000"}))
    c = TestClient(TestServer(app, host="127.0.0.1"))
    await c.start_server()
    yield c
    await c.close()


@pytest.mark.parametrize("path", ["/api/chat", "/api/generate", "/api/embed", "/api/show",
                                  "/api/pull", "/v1/chat/completions", "/v1/embeddings"])
async def test_json_routes_refuse_oversized_bodies_with_413(client: TestClient,
                                                           path: str) -> None:
    r = await client.post(path, data=b'{"model":"' + b"x" * 200_000 + b'"}',
                          headers={"Content-Type": "application/json"})
    assert r.status == 413
    body = await r.json()
    assert "request body too large" in json.dumps(body)


async def test_chunked_oversized_body_is_refused_without_buffering(client: TestClient) -> None:
    async def gen() -> AsyncIterator[bytes]:
        yield b'{"model":"'
        for _ in range(100):
            yield b"x" * 10_000
    r = await client.post("/api/chat", data=gen())
    assert r.status == 413
    assert (await r.json())["error"].startswith("request body too large")


async def test_too_many_messages_over_http_is_400(client: TestClient) -> None:
    set_caps(Caps(max_messages=3))
    r = await client.post("/api/chat", json={"model": "m", "messages": [
        {"role": "user", "content": "hi"}] * 4})
    assert r.status == 400
    assert (await r.json()) == {"error": "too many messages: 4 (limit 3, OLLAMAPY_MAX_MESSAGES)"}


async def test_blob_upload_is_not_limited_by_the_json_cap(client: TestClient) -> None:
    import hashlib
    data = b"z" * 300_000
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    r = await client.post(f"/api/blobs/{digest}", data=data)
    assert r.status == 201

