"""`/`, `/api/version`, `/api/status`: the probes every Ollama client uses.

`/api/version` answers the Ollama release whose API ollamapy implements (clients compare it
against feature minimums); ollamapy's own version rides on every response as
`X-Ollamapy-Version`."""

from __future__ import annotations

from aiohttp import web

from ollamapy import OLLAMA_API_VERSION, __version__
from ollamapy.server import wire

VERSION_HEADER = "X-Ollamapy-Version"


async def root(request: web.Request) -> web.Response:
    return web.Response(text="Ollama is running", content_type="text/plain")


async def version(request: web.Request) -> web.Response:
    return wire.json_response({"version": OLLAMA_API_VERSION})


async def status(request: web.Request) -> web.Response:
    """Ollama's StatusHandler as a local server with cloud disabled answers it: ollamapy has no
    cloud models or web search, by its own configuration."""
    return wire.json_response({"cloud": {"disabled": True, "source": "config"}})


async def _version_header(_request: web.Request, response: web.StreamResponse) -> None:
    response.headers[VERSION_HEADER] = __version__


def setup(app: web.Application) -> None:
    app.router.add_get("/", root)  # add_get also registers HEAD
    app.router.add_get("/api/version", version)
    app.router.add_get("/api/status", status)
    app.on_response_prepare.append(_version_header)
