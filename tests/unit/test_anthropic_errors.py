"""Errors on `/v1/messages*` leave the middleware in Anthropic's envelope and status codes
(a full queue is 529), whatever raised them; other paths keep their own shapes."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ollamapy.errors import BadRequest, NotFound, OllamaError, ServerBusy, Unauthorized
from ollamapy.server import middleware


@pytest.mark.parametrize("exc,status,kind", [
    (BadRequest("bad"), 400, "invalid_request_error"),
    (Unauthorized("unauthorized"), 401, "authentication_error"),
    (NotFound("model 'x' not found"), 404, "not_found_error"),
    (ServerBusy(), 529, "overloaded_error"),
    (OllamaError("boom"), 500, "api_error"),
])
async def test_anthropic_envelope(exc: OllamaError, status: int, kind: str) -> None:
    async def handler(_r: web.Request) -> web.Response:
        raise exc

    app = web.Application(middlewares=[middleware.errors], client_max_size=64)
    for path in ("/v1/messages", "/v1/messages/count_tokens", "/v1/chat/completions"):
        app.router.add_post(path, handler)
    async with TestClient(TestServer(app)) as c:
        r = await c.post("/v1/messages?beta=true", data=b"{}")
        assert r.status == status
        assert await r.json() == {"type": "error",
                                  "error": {"type": kind, "message": exc.message}}
        r = await c.post("/v1/chat/completions", data=b"{}")
        assert "type" not in await r.json()  # the OpenAI envelope there


async def test_body_too_large_is_request_too_large() -> None:
    async def handler(r: web.Request) -> web.Response:
        await r.read()
        return web.Response()

    app = web.Application(middlewares=[middleware.errors], client_max_size=64)
    app.router.add_post("/v1/messages/count_tokens", handler)
    async with TestClient(TestServer(app)) as c:
        r = await c.post("/v1/messages/count_tokens", data=b"x" * 1000)
        assert r.status == 413
        body = await r.json()
        assert body["type"] == "error" and body["error"]["type"] == "request_too_large"
