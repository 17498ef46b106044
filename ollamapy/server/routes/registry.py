"""`POST /api/pull` and `POST /api/push`: NDJSON progress exactly like Ollama's.

Streaming (the default): one ProgressResponse per line, flushed as it happens; an error before
anything was written is a real HTTP 500 `{"error": ...}`, after that it is the last NDJSON line.
`stream: false`: the last progress object (`{"status":"success"}`) or the error with status 500
(Ollama's waitForStream). A client that goes away cancels its pull; the shared download stops
when no pull wants it any more and keeps its progress for the next attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

from aiohttp import web

from ollamapy.api.decode import decode_request
from ollamapy.api.registry import ProgressResponse, PullRequest, PushRequest
from ollamapy.errors import BadRequest, InternalError, OllamaError
from ollamapy.inference.jsontypes import JsonObject
from ollamapy.jsoncodec import dumps
from ollamapy.logs import kv
from ollamapy.registry import auth
from ollamapy.registry.service import Emit
from ollamapy.server.middleware import error_response
from ollamapy.server.services import PullPush
from ollamapy.server.wire import ndjson
from ollamapy.store.names import ModelName

log = logging.getLogger("ollamapy.registry")

DISCONNECT_POLL_S = 0.5


class Outbox:
    """Progress waiting to be written; consecutive updates of one digest collapse into the
    newest, so a slow client never makes the queue grow."""

    def __init__(self) -> None:
        self.items: deque[JsonObject] = deque()
        self.ready = asyncio.Event()

    def put(self, msg: JsonObject) -> None:
        last = self.items[-1] if self.items else None
        if (last is not None and msg.get("digest") and last.get("digest") == msg["digest"]
                and last.get("status") == msg.get("status")):
            self.items[-1] = msg
        else:
            self.items.append(msg)
        self.ready.set()


def _line(msg: JsonObject) -> bytes:
    return ndjson(ProgressResponse(**msg).wire())


def _name(req: PullRequest, required_message: str) -> ModelName:
    text = req.target()
    if not text:
        raise BadRequest(required_message)
    return ModelName.parse(text)


async def pull_handler(request: web.Request, svc: PullPush) -> web.StreamResponse:
    req = await decode_request(PullRequest, request)
    name = _name(req, "invalid model name")  # Ollama: ParseName("") is invalid
    return await _run(request, req.streaming(), lambda emit: svc.pull(name, req.insecure, emit))


async def push_handler(request: web.Request, svc: PullPush) -> web.StreamResponse:
    req = await decode_request(PushRequest, request)
    name = _name(req, "model is required")
    return await _run(request, req.streaming(), lambda emit: svc.push(name, req.insecure, emit))


async def _run(request: web.Request, stream: bool,
               op: Callable[[Emit], Coroutine[Any, Any, None]]) -> web.StreamResponse:
    outbox = Outbox()
    task = asyncio.create_task(op(outbox.put))
    resp: web.StreamResponse | None = None
    last: JsonObject | None = None
    try:
        while True:
            if not outbox.items and not task.done():
                waiter = asyncio.ensure_future(outbox.ready.wait())
                try:
                    await asyncio.wait({task, waiter}, timeout=DISCONNECT_POLL_S,
                                       return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waiter.cancel()
                if _gone(request):
                    break
            outbox.ready.clear()
            while outbox.items:
                last = outbox.items.popleft()
                if stream:
                    if resp is None:
                        resp = web.StreamResponse(
                            headers={"Content-Type": "application/x-ndjson"})
                        await resp.prepare(request)
                    await resp.write(_line(last))
            if task.done() and not outbox.items:
                break
    except ConnectionResetError:  # the client hung up mid-stream: stop its pull
        task.cancel()
        await asyncio.wait({task})
        return resp or web.Response(status=499)
    finally:
        if not task.done():
            task.cancel()
            await asyncio.wait({task})  # never re-raises the task's error or cancellation
    if task.cancelled():  # the client went away
        return resp or web.Response(status=499)
    exc = task.exception()
    if exc is not None and not isinstance(exc, OllamaError):
        log.error("registry operation failed", exc_info=exc)
    # An unexpected exception's text stays in the log (above), never reaches the client.
    message = None if exc is None else (
        exc.message if isinstance(exc, OllamaError) else InternalError().message)
    if stream:
        if message is None:
            if resp is None:
                resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
                await resp.prepare(request)
            await resp.write_eof()
            return resp
        if resp is None:
            return error_response(500, message)
        with contextlib.suppress(ConnectionResetError):
            await resp.write(ndjson({"error": message}))
            await resp.write_eof()
        return resp
    if message is not None:
        return error_response(500, message)
    body = dumps(ProgressResponse(**(last or {"status": "success"})).wire())
    return web.Response(body=body, content_type="application/json", charset="utf-8")


def _gone(request: web.Request) -> bool:
    t = request.transport
    return t is None or t.is_closing()


async def _ensure_key(app: web.Application) -> None:
    """Like `ollama serve`: create ~/.ollama/id_ed25519 on first start."""
    path = auth.default_key_path()
    try:
        pub = await asyncio.to_thread(auth.ensure_keypair, path)
    except OSError as e:
        log.warning("could not create the registry key", extra=kv(path=path, error=e))
        return
    if pub is not None:
        print(f"Couldn't find '{path}'. Generating new private key.", flush=True)
        print(f"Your new public key is: \n\n{pub}\n", flush=True)


def setup(app: web.Application, svc: PullPush) -> None:
    async def pull(request: web.Request) -> web.StreamResponse:
        return await pull_handler(request, svc)

    async def push(request: web.Request) -> web.StreamResponse:
        return await push_handler(request, svc)

    app.router.add_post("/api/pull", pull)
    app.router.add_post("/api/push", push)
    app.on_startup.append(_ensure_key)
