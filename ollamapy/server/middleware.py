"""Where errors become responses: the one mapping from the error tree to HTTP."""

from __future__ import annotations

import array
import asyncio
import logging
import socket
import struct
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from ollamapy.api.anthropic import anthropic_error_body, anthropic_status
from ollamapy.errors import OllamaError, PayloadTooLarge
from ollamapy.inference.jsontypes import JsonObject
from ollamapy.jsoncodec import dumps
from ollamapy.logs import kv

log = logging.getLogger("ollamapy.server")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Set by streaming handlers once headers are out: later errors must become the last stream line.
STREAM_RESPONSE = web.RequestKey("stream_response", web.StreamResponse)


def error_response(status: int, message: str) -> web.Response:
    return web.Response(
        status=status,
        body=dumps({"error": message}),
        content_type="application/json",
        charset="utf-8",
    )


def openai_error_body(status: int, message: str) -> JsonObject:
    """The OpenAI error envelope; type by status as Ollama's openai.NewError picks it."""
    kind = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def openai_error_response(status: int, message: str) -> web.Response:
    body = openai_error_body(status, message)
    return web.Response(status=status, body=dumps(body),
                        content_type="application/json", charset="utf-8")


def anthropic_error_response(status: int, message: str) -> web.Response:
    body = anthropic_error_body(status, message)
    return web.Response(status=anthropic_status(status), body=dumps(body),
                        content_type="application/json", charset="utf-8")


ErrorRenderer = Callable[[int, str], web.Response]
# Per-path error shapes, longest prefix first: an API family whose clients expect their own
# error body (Anthropic's /v1/messages) has an entry; /v1/* else gets OpenAI's envelope,
# everything else Ollama's {"error": ...}. `register_error_renderer` adds to (or overrides)
# the built-in table.
_BUILTIN_RENDERERS: dict[str, ErrorRenderer] = {"/v1/messages": anthropic_error_response}
_RENDERERS: dict[str, ErrorRenderer] = {}


def register_error_renderer(prefix: str, renderer: ErrorRenderer) -> None:
    _RENDERERS[prefix] = renderer


def unregister_error_renderer(prefix: str) -> None:
    _RENDERERS.pop(prefix, None)


def renderer_for(path: str) -> ErrorRenderer:
    table = {**_BUILTIN_RENDERERS, **_RENDERERS}
    for prefix in sorted(table, key=len, reverse=True):
        if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
            return table[prefix]
    if path.startswith("/v1/"):
        return openai_error_response
    return error_response


def render_error(request: web.Request, status: int, message: str) -> web.Response:
    """Every error response goes through here, in the shape of the API the path belongs to
    (middlewares' own errors too: auth, Host check, body size)."""
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
        return render_exception(request, PayloadTooLarge(f"request body too large: {e.text}"))
    except web.HTTPException:
        raise
    except ConnectionResetError:
        # aiohttp's "Connection lost" from the body reader: the client closed or reset its
        # side before its body was whole. Go's decoder (Ollama) answers "unexpected EOF";
        # the client is often gone, so it is not worth more than a debug line.
        log.debug("request body cut short", extra=kv(method=request.method, path=request.path))
        return render_error(request, 400, "unexpected EOF")
    except Exception:
        log.exception("unhandled error", extra=kv(method=request.method, path=request.path))
        return render_error(request, 500, "internal server error")


# ------------------------------------------------------------------------------ deadlines

class StallClock:
    """Pure: has a transfer made no progress for `timeout` seconds? Fed (now, progress mark)
    observations; any change of the mark is progress. `idle` says whether the side is waiting
    at all (a paused writer, an unfinished body); while not idle nothing counts as a stall."""

    def __init__(self, timeout: float, now: float) -> None:
        self.timeout = timeout
        self._mark: object = None
        self._since = now

    def observe(self, now: float, waiting: bool, mark: object) -> bool:
        if not waiting or mark != self._mark:
            self._mark, self._since = mark, now
            return False
        return now - self._since >= self.timeout


_TCPI_BYTES_ACKED = 120  # offset of tcpi_bytes_acked in Linux's struct tcp_info (since 4.1)


def kernel_send_state(sock: Any) -> tuple[int, int] | None:
    """(bytes the peer has acknowledged, bytes still queued in the kernel) for a TCP socket on
    Linux; None elsewhere. On loopback the kernel takes megabytes (3.9 MB measured) before the
    transport ever pauses, so "paused and not shrinking" alone would let a client that reads
    nothing hold a token stream's slot for many minutes: acknowledged bytes are the progress."""
    if not sys.platform.startswith("linux") or sock is None:
        return None
    import fcntl
    import termios

    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
        if len(info) < _TCPI_BYTES_ACKED + 8:
            return None
        acked = int(struct.unpack_from("=Q", info, _TCPI_BYTES_ACKED)[0])
        queued = array.array("i", [0])
        fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, queued)  # SIOCOUTQ
        return acked, int(queued[0])
    except (OSError, AttributeError, ValueError, struct.error):
        return None


class Deadlines:
    """Watches one request's connection: a client that reads nothing of a response for
    `write_timeout` seconds (the transport paused, its buffer not shrinking), or sends nothing
    of a started body for `body_timeout` seconds, has its connection aborted. Streaming handlers
    see the closed transport and close their upstream request, which frees the runner slot."""

    def __init__(self, request: web.Request, write_timeout: float, body_timeout: float) -> None:
        self._request = request
        self._loop = asyncio.get_running_loop()
        now = self._loop.time()
        self._write = StallClock(write_timeout, now) if write_timeout > 0 else None
        self._body = StallClock(body_timeout, now) if body_timeout > 0 else None
        timeouts = [t for t in (write_timeout, body_timeout) if t > 0]
        self._tick = min(1.0, min(timeouts) / 4) if timeouts else 0.0
        self._handle: asyncio.TimerHandle | None = None
        self.handler_done = False

    def start(self) -> None:
        if self._tick > 0:
            self._handle = self._loop.call_later(self._tick, self._check)

    def _check(self) -> None:
        self._handle = None
        tr = self._request.transport
        if tr is None or tr.is_closing():
            return
        now = self._loop.time()
        proto = self._request.protocol
        paused = bool(getattr(proto, "writing_paused", False))
        buffered = tr.get_write_buffer_size()
        kernel = kernel_send_state(tr.get_extra_info("socket"))
        if kernel is not None:  # waiting: data is queued for the client; progress: it acks
            acked, queued = kernel
            waiting, mark, pending = queued > 0 or buffered > 0, acked, queued + buffered
        else:  # portable: the transport is paused and its buffer does not shrink
            waiting, mark, pending = paused, buffered, buffered
        if self._write is not None and self._write.observe(now, waiting, mark):
            self._abort("client read nothing of the response", self._write.timeout)
            return
        content = self._request.content
        if self._body is not None and not self.handler_done and self._body.observe(
                now, not content.is_eof(), content.total_bytes):
            self._abort("client sent nothing more of the request body", self._body.timeout)
            return
        if self.handler_done and not paused and pending == 0:
            return  # the response is out: nothing left to watch
        self._handle = self._loop.call_later(self._tick, self._check)

    def _abort(self, why: str, timeout: float) -> None:
        log.warning("closing a stalled connection: %s for %gs", why, timeout,
                    extra=kv(method=self._request.method, path=self._request.path,
                             remote=self._request.remote))
        tr = self._request.transport
        if tr is not None:
            tr.abort()


def deadlines(write_timeout: float, body_timeout: float
              ) -> Middleware:
    """Middleware: `Deadlines` around every request (0 turns a deadline off)."""

    @web.middleware
    async def watch(request: web.Request, handler: Handler) -> web.StreamResponse:
        d = Deadlines(request, write_timeout, body_timeout)
        d.start()
        try:
            return await handler(request)
        finally:
            # Keep watching until the response (or the error page) is written: aiohttp sends
            # it after the middlewares return, to a client that may not read it either. The
            # watch ends itself once the buffer is empty or the connection is gone.
            d.handler_done = True

    return watch


def server_settings(header_timeout: float) -> JsonObject:
    """aiohttp server settings for `web.AppRunner(**...)` (serve.py): a connection that has not
    sent a complete request head `header_timeout` seconds after connecting or after its previous
    response is closed (aiohttp's keep-alive timer is also its header deadline)."""
    return {"keepalive_timeout": header_timeout if header_timeout > 0 else 3630.0}
