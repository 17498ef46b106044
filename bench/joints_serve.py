"""`ollamapy serve` with a wall-clock timestamp at each joint of a request (for
`python -m bench joints`): the first bytes of a POST in, the handler, the body read, the
decode, the engine's prefetch/plan/lease/render/body steps, the upstream send and response
head, the first token's read and parse, the response's prepare and its first write. SIGUSR2
writes the records to $BENCH_JOINTS_OUT (JSON). Sequential requests only: one request's marks
at a time."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Awaitable, Callable
from types import FrameType, ModuleType
from typing import Any

from aiohttp import web_protocol, web_response

from ollamapy.api import decode as decode_mod
from ollamapy.config import load_settings
from ollamapy.inference import engine
from ollamapy.runner import client as runner_client
from ollamapy.runner import sse_stream
from ollamapy.server.routes import inference
from ollamapy.server.serve import run

now = time.perf_counter_ns
RECORDS: list[dict[str, int]] = []
cur: dict[str, int] = {}


def mark(name: str) -> None:
    cur.setdefault(name, now())


def around_async(mod: ModuleType | type, attr: str, before: str = "", after: str = "") -> None:
    f: Callable[..., Awaitable[Any]] = getattr(mod, attr)

    async def wrapped(*a: Any, **k: Any) -> Any:
        if before:
            mark(before)
        r = await f(*a, **k)
        if after:
            mark(after)
        return r

    setattr(mod, attr, wrapped)


def around_sync(mod: ModuleType, attr: str, before: str = "", after: str = "") -> None:
    f: Callable[..., Any] = getattr(mod, attr)

    def wrapped(*a: Any, **k: Any) -> Any:
        if before:
            mark(before)
        r = f(*a, **k)
        if after:
            mark(after)
        return r

    setattr(mod, attr, wrapped)


def install() -> None:
    data_received = web_protocol.RequestHandler.data_received
    connection_made = web_protocol.RequestHandler.connection_made

    def accepted(self: web_protocol.RequestHandler, transport: Any) -> None:
        cur.clear()
        cur["accepted"] = now()
        connection_made(self, transport)

    web_protocol.RequestHandler.connection_made = accepted  # type: ignore[method-assign]

    def first_bytes(self: web_protocol.RequestHandler, data: bytes) -> None:
        if data[:4] == b"POST":
            cur["in"] = now()
        data_received(self, data)

    web_protocol.RequestHandler.data_received = first_bytes  # type: ignore[method-assign]
    for route in ("generate", "chat"):
        around_async(inference, route, before="handler")
    around_async(decode_mod, "read_limited", after="body_read")
    around_async(inference, "decode_request", after="decoded")
    around_async(engine, "prefetch", before="engine", after="prefetched")
    around_sync(engine, "plan_generate", after="planned")
    around_sync(engine, "plan_chat", after="planned")
    around_sync(engine, "renderer", before="leased")
    around_sync(engine, "completion_body", after="body_built")

    send = sse_stream.send

    async def traced_send(proto: sse_stream.SSEProtocol, request: bytes) -> Any:
        streamed = proto.body is None
        if streamed:
            mark("sent")
        r = await send(proto, request)
        if streamed:
            mark("upstream_head")
        return r

    sse_stream.send = traced_send
    up_received = sse_stream.SSEProtocol.data_received

    def upstream_data(self: sse_stream.SSEProtocol, data: bytes) -> None:
        if self.body is None and "upstream_head" in cur:
            mark("upstream_data")  # the first read after the head: the first token
        up_received(self, data)

    sse_stream.SSEProtocol.data_received = upstream_data  # type: ignore[method-assign]
    sse_event = runner_client.sse_event

    def parsed(*a: Any, **k: Any) -> Any:
        if "upstream_data" in cur:
            mark("upstream_event")
        return sse_event(*a, **k)

    runner_client.sse_event = parsed
    around_async(web_response.StreamResponse, "prepare", before="prepare")
    write = web_response.StreamResponse.write

    async def first_write(self: web_response.StreamResponse, data: Any) -> None:
        await write(self, data)
        if "first_write" not in cur:
            cur["first_write"] = now()
            RECORDS.append(dict(cur))

    web_response.StreamResponse.write = first_write  # type: ignore[method-assign]


def _dump(_sig: int, _frame: FrameType | None) -> None:
    with open(os.environ["BENCH_JOINTS_OUT"], "w") as f:
        json.dump(RECORDS, f)


def main() -> None:
    install()
    signal.signal(signal.SIGUSR2, _dump)
    run(load_settings())


if __name__ == "__main__":
    main()
