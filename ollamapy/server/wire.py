"""Bytes on the wire, shared by every API family: one JSON encoder, NDJSON and SSE framing,
the streamed-response writer (status first, then one write per upstream read), the mid-stream
error lines, and cancel-on-disconnect for handlers.

JSON is compact and not ASCII-escaped, as Go's encoder writes it (minus HTML escaping).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web

from ollamapy.errors import ClientClosed, OllamaError, RunnerError
from ollamapy.inference.events import Event, Flush, close_stream
from ollamapy.jsoncodec import dumps
from ollamapy.server.middleware import STREAM_RESPONSE, openai_error_body

log = logging.getLogger("ollamapy.server.wire")

DISCONNECT_POLL_S = 0.05
NDJSON = "application/x-ndjson"
EVENT_STREAM = "text/event-stream"
SSE_DONE = b"data: [DONE]\n\n"

def ndjson(obj: Any) -> bytes:
    return dumps(obj) + b"\n"


def sse(obj: Any) -> bytes:
    """One SSE `data:` event (a str is sent as is, e.g. `[DONE]`)."""
    if isinstance(obj, str):
        return b"data: " + obj.encode() + b"\n\n"
    return b"data: " + dumps(obj) + b"\n\n"


def json_response(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=dumps(obj), status=status, content_type="application/json")


async def json_response_built(build: Callable[[], Any]) -> web.Response:
    """A JSON response built and encoded in a worker thread, for bodies the request sizes
    (N embeddings: 2,000 x 576 floats take ~1 s to normalize and encode)."""
    body = await asyncio.to_thread(lambda: dumps(build()))
    return web.Response(body=body, content_type="application/json")


def ndjson_error(e: OllamaError) -> bytes:
    """A mid-stream error as Ollama sends it: a final `{"error": ...}` line."""
    return ndjson({"error": e.message})


def sse_error(e: OllamaError) -> bytes:
    """A mid-stream error in the OpenAI envelope."""
    return sse(openai_error_body(e.status, e.message))


async def until_disconnect(request: web.Request, work: Awaitable[web.StreamResponse]
                           ) -> web.StreamResponse:
    """Run the handler body; if the client's connection goes away first, cancel it (closing the
    upstream stream so a 1-slot runner is free at once).

    The work runs in the handler's own task (no task of its own, no wait set: this is on every
    request's path); a timer looks at the connection every DISCONNECT_POLL_S and cancels the
    task when it is gone."""
    task = asyncio.current_task()
    assert task is not None
    watch = _DisconnectWatch(request, task)
    try:
        result = await work
    except (asyncio.CancelledError, Exception):
        if not watch.fired or task.cancelling() > 1:  # not (only) ours: the server's
            raise
        # the client is gone: whatever the cancelled work ended with, nobody reads it
        task.uncancel()
        resp: web.StreamResponse | None = request.get(STREAM_RESPONSE)
        if resp is not None:
            return resp
        raise ClientClosed() from None
    finally:
        watch.stop()
    if watch.fired:
        task.uncancel()  # the work swallowed our cancel and finished anyway
    return result


class _DisconnectWatch:
    """Cancels `task` once `request`'s connection is closed (polled, as aiohttp says nothing)."""

    __slots__ = ("_handle", "_loop", "_request", "_task", "fired")

    def __init__(self, request: web.Request, task: asyncio.Task[Any]) -> None:
        self._request = request
        self._task = task
        self._loop = asyncio.get_running_loop()
        self.fired = False
        self._handle: asyncio.TimerHandle | None = self._loop.call_later(
            DISCONNECT_POLL_S, self._check)

    def _check(self) -> None:
        tr = self._request.transport
        if tr is None or tr.is_closing():
            self._handle = None
            self.fired = True
            self._task.cancel()
            return
        self._handle = self._loop.call_later(DISCONNECT_POLL_S, self._check)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


class _StreamResponse(web.StreamResponse):
    """Headers go out with the first body bytes, in one write, instead of on their own at
    prepare (aiohttp's web.Response does the same): one syscall less on the path of the first
    token, and the client wakes once for headers and token."""

    _send_headers_immediately = False


async def write_stream(request: web.Request, events: AsyncIterator[Event], *,
                       encode: Callable[[Event], bytes], content_type: str,
                       error: Callable[[OllamaError], bytes], tail: bytes = b"",
                       sse_headers: bool = False,
                       whole: Callable[[Event], web.StreamResponse | None] | None = None
                       ) -> web.StreamResponse:
    """Write each event's bytes as they come: the first at once, then one write per upstream
    read (Flush). Nothing is sent before the first bytes exist, so earlier errors still get a
    real status; later ones become a final error line. `whole`: given the first event, a
    complete non-streamed answer to send instead (the unload reply), or None."""
    resp: web.StreamResponse | None = None
    pending: list[bytes] = []
    try:
        async for ev in events:
            if isinstance(ev, Flush):
                if pending and resp is not None:
                    await resp.write(b"".join(pending))
                    pending.clear()
                continue
            if resp is None:
                if whole is not None:
                    answer = whole(ev)
                    if answer is not None:
                        return answer
                    whole = None
                data = encode(ev)
                if not data:
                    continue
                resp = _StreamResponse(headers={"Content-Type": content_type})
                if sse_headers:
                    resp.headers["Cache-Control"] = "no-cache"
                    resp.headers["X-Accel-Buffering"] = "no"
                request[STREAM_RESPONSE] = resp
                await resp.prepare(request)
                # the first bytes go out with the headers at once, not at the Flush after them:
                # one resumption of the whole event chain less on the first token's path
                await resp.write(data)
                continue
            data = encode(ev)
            if data:
                pending.append(data)
        if resp is not None and (pending or tail):
            await resp.write(b"".join(pending) + tail)
            pending.clear()
    except OllamaError as e:
        if resp is None:
            raise
        log.warning("stream failed after start: %s", e.message)
        with contextlib.suppress(ConnectionError):
            await resp.write(b"".join(pending) + error(e))
    except ConnectionError:
        log.debug("client went away mid-stream")
        return resp if resp is not None else web.Response(status=499)
    except Exception:
        if resp is None:
            raise
        log.exception("stream failed after start")
        with contextlib.suppress(ConnectionError):
            await resp.write(b"".join(pending) + error(OllamaError("internal server error")))
    finally:
        await close_stream(events)  # closes upstream at once
    if resp is None:
        raise RunnerError("no response from llama runner")
    with contextlib.suppress(ConnectionError):
        await resp.write_eof()
    return resp
