"""The upstream client authenticates to its runner: every call carries the runner's key."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from ollamapy.errors import RunnerAuthError
from ollamapy.runner import client as upstream

KEY = "runner-key-123"


def reply(body: object) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(_: web.Request) -> web.Response:
        return web.json_response(body)

    return handler


def keyed_runner() -> web.Application:
    """llama-server's rule: 401 without `Authorization: Bearer <key>`, /health open."""
    seen: list[str] = []

    @web.middleware
    async def auth(request: web.Request, handler):  # type: ignore[no-untyped-def]
        seen.append(request.path)
        if request.path != "/health" and request.headers.get("Authorization") != f"Bearer {KEY}":
            return web.json_response({"error": {"message": "Invalid API Key",
                                                "type": "authentication_error"}}, status=401)
        return await handler(request)

    async def completion(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b"data: " + json.dumps({"content": "hi", "stop": True}).encode()
                         + b"\n\n")
        return resp

    app = web.Application(middlewares=[auth])
    app.router.add_post("/completion", completion)
    app.router.add_post("/tokenize", reply({"tokens": [1, 2]}))
    app.router.add_post("/detokenize", reply({"content": "ab"}))
    app.router.add_post("/apply-template", reply({"prompt": "P"}))
    app.router.add_post("/embeddings", reply(
        [{"index": 0, "embedding": [[1.0, 0.0]]}]))
    app.router.add_get("/v1/models", reply(
        {"data": [{"meta": {"n_vocab": 49152}}]}))
    app["seen"] = seen
    return app


@pytest.fixture
async def runner() -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    srv = TestServer(keyed_runner(), host="127.0.0.1")
    await srv.start_server()
    async with aiohttp.ClientSession() as s:
        yield s, str(srv.make_url("")).rstrip("/")
    await srv.close()


async def test_every_call_sends_the_runner_key(runner) -> None:
    s, url = runner
    events = [e async for e in upstream.completion_stream(s, url, {"prompt": "x"}, api_key=KEY)
              if isinstance(e, dict)]
    assert events[-1]["stop"] is True
    assert await upstream.tokenize(s, url, "ab", api_key=KEY) == [1, 2]
    assert await upstream.detokenize(s, url, [1, 2], api_key=KEY) == "ab"
    assert await upstream.apply_template(s, url, [], tools=None, api_key=KEY) == "P"
    assert await upstream.embeddings(s, url, ["a"], api_key=KEY) == [[1.0, 0.0]]
    assert await upstream.n_vocab(s, url, api_key=KEY) == 49152


async def test_without_the_key_the_runner_refuses(runner) -> None:
    s, url = runner
    with pytest.raises(RunnerAuthError) as e:
        await upstream.tokenize(s, url, "ab")
    # ollamapy's fault, not the client's: never a 401 that reads as "your key is wrong"
    assert e.value.status == 500 and "runner key" in e.value.message
