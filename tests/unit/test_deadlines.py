"""Slow and stalled clients: a client that reads nothing of a stream is cut off and its
upstream request closed; header and body deadlines drop clients that send nothing."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession, web

from ollamapy.errors import NotFound
from ollamapy.runner.client import RunnerClient
from ollamapy.runner.process import free_port
from ollamapy.server import keys, middleware
from ollamapy.server.routes import inference
from ollamapy.store.model import Model
from tests.fake_runner import FakeLease

pytestmark = pytest.mark.timeout(60)
LIVENESS_S = 30.0  # far above the deadlines under test: a bound, not a timing assertion


def test_stall_clock() -> None:
    c = middleware.StallClock(10.0, now=0.0)
    assert not c.observe(5.0, True, 100)  # first sight of this mark
    assert not c.observe(14.0, True, 100)
    assert c.observe(15.0, True, 100)  # ten seconds without progress
    assert not c.observe(16.0, True, 90)  # the buffer shrank: the client reads
    assert not c.observe(25.0, True, 90)
    assert not c.observe(30.0, False, 90)  # not waiting on the client at all
    assert not c.observe(39.0, True, 90)
    assert c.observe(40.0, True, 90)


async def _wait_closed(sock: socket.socket) -> bytes:
    """Read until the server closes the connection; return what it sent."""
    loop = asyncio.get_running_loop()
    got = b""
    async with asyncio.timeout(LIVENESS_S):
        while chunk := await loop.sock_recv(sock, 65536):
            got += chunk
    return got


async def _connect(port: int, rcvbuf: int | None = None) -> socket.socket:
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.setblocking(False)
    await asyncio.get_running_loop().sock_connect(s, ("127.0.0.1", port))
    return s


@asynccontextmanager
async def serve(app: web.Application, **kwargs: Any) -> AsyncIterator[int]:
    runner = web.AppRunner(app, **kwargs)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield port
    finally:
        await runner.cleanup()


async def test_header_deadline_closes_a_silent_connection() -> None:
    async def ok(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", ok)
    async with serve(app, **middleware.server_settings(header_timeout=0.5)) as port:
        s = await _connect(port)
        try:  # half a request head, then nothing (slowloris)
            await asyncio.get_running_loop().sock_sendall(s, b"GET / HTTP/1.1\r\nHost: x\r\n")
            assert await _wait_closed(s) == b""
        finally:
            s.close()


async def test_body_deadline_drops_a_client_that_stops_sending(caplog) -> None:
    caplog.set_level(logging.WARNING)
    finished: list[bool] = []

    async def handler(request: web.Request) -> web.Response:
        try:
            await request.read()
            finished.append(True)
        except Exception:
            finished.append(False)
            raise
        return web.Response(text="ok")

    app = web.Application(middlewares=[middleware.errors, middleware.deadlines(0, 0.5)])
    app.router.add_post("/api/create", handler)
    async with serve(app) as port:
        s = await _connect(port)
        try:
            await asyncio.get_running_loop().sock_sendall(
                s, b"POST /api/create HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"a\"")
            assert await _wait_closed(s) == b""
        finally:
            s.close()
    assert finished == [False]
    assert "request body" in caplog.text


class EndlessUpstream:
    """A llama-server /completion that never stops; notes when its client closes the request."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.closed = asyncio.Event()

    async def completion(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        event = b"data: " + json.dumps({"content": "x" * 4000, "tokens": [1],
                                        "stop": False}).encode() + b"\n\n"
        self.started.set()
        try:
            while True:
                await resp.write(event)
                await asyncio.sleep(0)
        finally:
            self.closed.set()


async def test_client_that_reads_nothing_frees_the_runner_slot(caplog) -> None:
    """A raw client sends a streaming generate and never reads: after the write deadline its
    connection is dropped and the upstream /completion is closed (the runner slot is free)."""
    caplog.set_level(logging.WARNING)
    up = EndlessUpstream()
    up_app = web.Application()
    up_app.router.add_post("/completion", up.completion)
    m = Model(name="registry.ollama.ai/library/raw:latest", short_name="raw:latest",
              digest="0" * 64, model_path=Path("/nonexistent.gguf"), size=0,
              modified_at=datetime.now(UTC), template="{{ .Prompt }}",
              capabilities=("completion",))
    released = asyncio.Event()

    class Store:
        def resolve(self, name: str) -> Model:
            if name not in ("raw", "raw:latest"):
                raise NotFound(f"model '{name}' not found")
            return m

        def cached(self, name: str) -> Model | None:
            return m if name in ("raw", "raw:latest") else None

    async with serve(up_app) as up_port, ClientSession() as session:
        class Scheduler:
            @asynccontextmanager
            async def lease(self, model: Model, opts: Any, ka: Any, *, embedding: bool = False
                            ) -> AsyncIterator[FakeLease]:
                try:
                    yield FakeLease(RunnerClient(session, f"http://127.0.0.1:{up_port}"), model)
                finally:
                    released.set()

        app = web.Application(middlewares=[middleware.errors,
                                           middleware.deadlines(0.5, 0)])
        app[keys.STORE_KEY] = Store()  # type: ignore[arg-type]
        app[keys.SCHEDULER_KEY] = Scheduler()  # type: ignore[arg-type]
        inference.setup(app)
        async with serve(app) as port:
            body = json.dumps({"model": "raw", "prompt": "go", "raw": True,
                               "options": {"num_predict": -1}}).encode()
            s = await _connect(port, rcvbuf=4096)
            try:
                await asyncio.get_running_loop().sock_sendall(
                    s, b"POST /api/generate HTTP/1.1\r\nHost: x\r\nContent-Type: "
                    b"application/json\r\nContent-Length: " + str(len(body)).encode()
                    + b"\r\n\r\n" + body)
                async with asyncio.timeout(LIVENESS_S):
                    await up.started.wait()
                    await up.closed.wait()  # the upstream request was closed
                    await released.wait()  # and the runner slot given back
            finally:
                s.close()
    assert "read nothing" in caplog.text


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="TCP_INFO is Linux")
def test_kernel_send_state_sees_a_peer_that_reads_nothing() -> None:
    """Loopback queues megabytes in the kernel; acknowledged bytes stop moving when the peer
    stops reading, whatever the transport's own buffer says."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    peer = socket.create_connection(srv.getsockname())
    conn, _ = srv.accept()
    try:
        conn.sendall(b"x" * 1000)
        peer.recv(1000, socket.MSG_WAITALL)
        conn.setblocking(False)
        with pytest.raises(BlockingIOError):
            while True:  # fill every buffer between us and the peer that reads nothing
                conn.send(b"y" * 65536)
        state = middleware.kernel_send_state(conn)
        assert state is not None
        acked, queued = state
        assert acked >= 1000 and queued > 0
        assert middleware.kernel_send_state(conn) == state  # no progress without reads
    finally:
        for s in (peer, conn, srv):
            s.close()
