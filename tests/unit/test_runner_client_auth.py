"""The upstream client authenticates to its runner: every call carries the runner's key."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from ollamapy.errors import RunnerAuthError
from ollamapy.runner.client import RunnerClient

KEY = "runner-key-123"


def reply(body: object) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(_: web.Request) -> web.Response:
        return web.json_response(body)

    return handler


def keyed_runner() -> web.Application:
    """llama-server's rule: 401 without `Authorization: Bearer <key>`, /health open."""
    @web.middleware
    async def auth(request: web.Request, handler):  # type: ignore[no-untyped-def]
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
    app.router.add_post("/v1/embeddings", reply(
        {"data": [{"index": 0, "embedding": [[1.0, 0.0]]}], "usage": {"prompt_tokens": 1}}))
    app.router.add_get("/props", reply({"chat_template": ""}))
    app.router.add_get("/v1/models", reply(
        {"data": [{"meta": {"n_vocab": 49152}}]}))
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
    c = RunnerClient(s, url, api_key=KEY)
    events = [e async for e in c.completion({"prompt": "x"}) if isinstance(e, dict)]
    assert events[-1]["stop"] is True
    assert await c.tokenize("ab") == [1, 2]
    assert await c.detokenize([1, 2]) == "ab"
    assert await c.apply_template([], tools=None) == "P"
    assert (await c.embeddings(["a"]))[0] == [[1.0, 0.0]]
    assert await c.n_vocab() == 49152
    assert await c.props() == {"chat_template": ""}


async def test_without_the_key_the_runner_refuses(runner) -> None:
    s, url = runner
    with pytest.raises(RunnerAuthError) as e:
        await RunnerClient(s, url).tokenize("ab")
    # ollamapy's fault, not the client's: never a 401 that reads as "your key is wrong"
    assert e.value.status == 500 and "runner key" in e.value.message
