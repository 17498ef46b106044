"""The access log: one line per request (method, path, status, duration, model, tokens).

Never a body, a query string or a header: paths are the only client text logged, cut to
MAX_PATH chars. The level is OLLAMAPY_ACCESS_LOG (`off` disables it), like Ollama's [GIN] lines.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from ollamapy.config import Settings
from ollamapy.logs import TRACE, kv

log = logging.getLogger("ollamapy.access")

MAX_PATH = 200
LEVELS = {"trace": TRACE, "debug": logging.DEBUG, "info": logging.INFO,
          "warning": logging.WARNING, "error": logging.ERROR}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Set by handlers (through metrics.record_usage) when a generation ends.
TOKENS = web.RequestKey("access_tokens", tuple)


def fields(method: str, path: str, status: int, seconds: float, model: str | None,
           tokens: tuple[int, int] | None) -> dict[str, object]:
    """The key=value fields of one access line (pure, for tests)."""
    shown = path if len(path) <= MAX_PATH else path[:MAX_PATH] + "..."
    out: dict[str, object] = {"method": method, "path": shown, "status": status,
                              "duration": f"{seconds * 1000:.1f}ms"}
    if model:
        out["model"] = model
    if tokens is not None:
        out["prompt_tokens"], out["eval_tokens"] = tokens
    return out


def middleware(settings: Settings) -> Middleware:
    level_name = settings.access_log
    level = LEVELS.get(level_name)

    @web.middleware
    async def access(request: web.Request, handler: Handler) -> web.StreamResponse:
        if level is None or not log.isEnabledFor(level):
            return await handler(request)
        from ollamapy.server.metrics import REQUEST_MODEL

        start = time.monotonic()
        status = 500
        try:
            resp = await handler(request)
            status = resp.status
            return resp
        except web.HTTPException as e:
            status = e.status
            raise
        except asyncio.CancelledError:
            status = 499
            raise
        finally:
            tokens = request.get(TOKENS)
            log.log(level, "request", extra=kv(**fields(
                request.method, request.path, status, time.monotonic() - start,
                request.get(REQUEST_MODEL), tokens)))

    return access
