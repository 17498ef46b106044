"""`/` and `/api/version`: the liveness probes every Ollama client uses."""

from __future__ import annotations

from aiohttp import web

from ollamapy import __version__


async def root(request: web.Request) -> web.Response:
    return web.Response(text="Ollama is running", content_type="text/plain")


async def version(request: web.Request) -> web.Response:
    return web.json_response({"version": __version__})


def setup(app: web.Application) -> None:
    app.router.add_get("/", root)  # add_get also registers HEAD
    app.router.add_get("/api/version", version)
