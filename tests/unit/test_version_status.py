"""`/api/version` answers the Ollama API version ollamapy implements (clients gate features on
it), ollamapy's own version rides on every response's header; `/api/status` is a local
server's answer with cloud disabled."""

from __future__ import annotations

from aiohttp.test_utils import TestClient, TestServer

from ollamapy import OLLAMA_API_VERSION, __version__
from ollamapy.config import load_settings
from ollamapy.server.app import create_app


def _newer_or_equal(a: str, b: str) -> bool:
    return tuple(map(int, a.split("."))) >= tuple(map(int, b.split(".")))


async def test_version_status_and_header() -> None:
    assert _newer_or_equal(OLLAMA_API_VERSION, "0.6.4")  # Copilot Chat's / Raycast's minimum
    async with TestClient(TestServer(create_app(load_settings({})))) as c:
        r = await c.get("/api/version")
        assert r.status == 200 and await r.json() == {"version": OLLAMA_API_VERSION}
        assert await r.read() == b'{"version":"%s"}' % OLLAMA_API_VERSION.encode()  # Go's bytes
        assert r.headers["X-Ollamapy-Version"] == __version__
        r = await c.get("/api/status")
        assert await r.read() == b'{"cloud":{"disabled":true,"source":"config"}}'
        r = await c.get("/no/such/path")  # every response carries it, errors too
        assert r.status == 404 and r.headers["X-Ollamapy-Version"] == __version__
