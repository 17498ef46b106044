"""The access log: one line per request (method, path, status, duration, model, tokens).

Never a body, a query string or a header: paths are the only client text logged, cut to
MAX_PATH chars. The level is OLLAMAPY_ACCESS_LOG (`off` disables it), like Ollama's [GIN] lines.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiohttp import web

from ollamapy.config import Settings
from ollamapy.logs import TRACE, kv
from ollamapy.server.metrics import REQUEST_MODEL, TOKENS

log = logging.getLogger("ollamapy.access")

MAX_PATH = 200
LEVELS = {"trace": TRACE, "debug": logging.DEBUG, "info": logging.INFO,
          "warning": logging.WARNING, "error": logging.ERROR}


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


Recorder = Callable[[web.Request, int, float], None]


def recorder(settings: Settings) -> Recorder | None:
    """The access log's line writer for a finished request (status, seconds), or None when
    OLLAMAPY_ACCESS_LOG is off. metrics.tracker calls it: the request is timed once for both."""
    level = LEVELS.get(settings.access_log)
    if level is None:
        return None

    def record(request: web.Request, status: int, seconds: float) -> None:
        if log.isEnabledFor(level):
            log.log(level, "request", extra=kv(**fields(
                request.method, request.path, status, seconds,
                request.get(REQUEST_MODEL), request.get(TOKENS))))

    return record
