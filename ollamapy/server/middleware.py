"""Where errors become responses: the one mapping from the error tree to HTTP."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ollamapy.errors import OllamaError

log = logging.getLogger("ollamapy.server")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Set by streaming handlers once headers are out: later errors must become the last stream line.
STREAM_RESPONSE = web.RequestKey("stream_response", web.StreamResponse)


def error_response(status: int, message: str) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps({"error": message}).encode(),
        content_type="application/json",
        charset="utf-8",
    )


def is_openai(request: web.Request) -> bool:
    return request.path.startswith("/v1/")


def openai_error_body(status: int, message: str) -> dict[str, Any]:
    """The OpenAI error envelope; type by status as Ollama's openai.NewError picks it."""
    kind = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def openai_error_response(status: int, message: str) -> web.Response:
    body = openai_error_body(status, message)
    return web.Response(status=status, body=json.dumps(body).encode(),
                        content_type="application/json", charset="utf-8")


ErrorRenderer = Callable[[int, str], web.Response]
# Per-path error shapes, longest prefix first: an API family whose clients expect their own
# error body (Anthropic's /v1/messages) registers it here; /v1/* else gets OpenAI's envelope,
# everything else Ollama's {"error": ...}.
_RENDERERS: dict[str, ErrorRenderer] = {}


def register_error_renderer(prefix: str, renderer: ErrorRenderer) -> None:
    _RENDERERS[prefix] = renderer


def unregister_error_renderer(prefix: str) -> None:
    _RENDERERS.pop(prefix, None)


def renderer_for(path: str) -> ErrorRenderer:
    for prefix in sorted(_RENDERERS, key=len, reverse=True):
        if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
            return _RENDERERS[prefix]
    if path.startswith("/v1/"):
        return openai_error_response
    return error_response


def render_error(request: web.Request, status: int, message: str) -> web.Response:
    return renderer_for(request.path)(status, message)


def render_exception(request: web.Request, e: OllamaError) -> web.Response:
    """For middlewares outside `errors` (security): the same shape `errors` would give."""
    return render_error(request, e.status, e.message)


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except OllamaError as e:
        resp = request.get(STREAM_RESPONSE)
        if resp is not None and resp.prepared:
            # Headers are out: the error becomes the stream's last line (see relay helpers).
            raise
        return render_error(request, e.status, e.message)
    except web.HTTPNotFound:
        return web.Response(status=404, text="404 page not found", content_type="text/plain")
    except web.HTTPMethodNotAllowed:
        return web.Response(status=405, text="405 method not allowed", content_type="text/plain")
    except web.HTTPRequestEntityTooLarge as e:  # client_max_size exceeded
        return render_error(request, 413, f"request body too large: {e.text}")
    except web.HTTPException:
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return render_error(request, 500, "internal server error")
