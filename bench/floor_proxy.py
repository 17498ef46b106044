"""The least an aiohttp front can do as a streaming proxy (`python -m bench floor` runs it):
POST /completion is read and sent on to one llama-server over a connection opened ahead of
time, and the upstream's bytes are written back as they come, unparsed (its chunk framing
included: the bench client only looks at `data: ` lines). No JSON, no validation, no
template, no scheduler: a lower bound on the wall time any aiohttp-based supervisor adds.
It marks the same joints as bench/joints_serve.py (request bytes in, handler, upstream POST,
first token read, first write); SIGUSR2 writes their medians to JOINTS_OUT as JSON.

Usage: python -m bench.floor_proxy PORT UPSTREAM_HOST UPSTREAM_PORT JOINTS_OUT
"""

from __future__ import annotations

import asyncio
import json
import signal
import statistics
import sys
import time
from types import FrameType
from typing import Any

import uvloop
from aiohttp import web, web_protocol

now = time.perf_counter_ns
cur: dict[str, int] = {}
records: list[dict[str, int]] = []
JOINTS = (("in", "handler", "request bytes in -> handler"),
          ("in", "sent", "request bytes in -> upstream POST"),
          ("upstream_data", "first_write", "relay of the first token (read -> first write)"))


class Upstream:
    """One connection opened ahead for the next request (llama-server closes each streamed
    response's connection), as ollamapy's runner/spare.py does."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.spare: asyncio.Task[tuple[asyncio.StreamReader, asyncio.StreamWriter]] | None = None

    def refill(self) -> None:
        self.spare = asyncio.ensure_future(asyncio.open_connection(self.host, self.port))

    async def take(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.spare is None:
            self.refill()
        assert self.spare is not None
        conn = await self.spare
        self.refill()
        return conn


async def completion(request: web.Request) -> web.StreamResponse:
    cur["handler"] = now()
    up: Upstream = request.app["up"]
    body = await request.read()
    reader, writer = await up.take()
    auth = request.headers.get("Authorization", "")
    writer.write(b"POST /completion HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 b"Content-Type: application/json\r\nAuthorization: " + auth.encode()
                 + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    cur["sent"] = now()
    await reader.readuntil(b"\r\n\r\n")
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    while data := await reader.read(65536):
        token = "first_write" not in cur and b"data: " in data
        if token:
            cur["upstream_data"] = now()
        await resp.write(data)
        if token:
            cur["first_write"] = now()
            records.append(dict(cur))
    writer.close()
    await resp.write_eof()
    return resp


def _mark_requests() -> None:
    received = web_protocol.RequestHandler.data_received

    def first_bytes(self: web_protocol.RequestHandler, data: bytes) -> None:
        if data[:4] == b"POST":
            cur.clear()
            cur["in"] = now()
        received(self, data)

    web_protocol.RequestHandler.data_received = first_bytes  # type: ignore[method-assign]


def _dumper(path: str) -> Any:
    def dump(_sig: int, _frame: FrameType | None) -> None:
        out = {}
        for a, b, label in JOINTS:
            xs = [(r[b] - r[a]) / 1e6 for r in records if a in r and b in r]
            out[label] = statistics.median(xs) if xs else None
        with open(path, "w") as f:
            json.dump(out, f)
    return dump


def main() -> None:
    port, host, up_port, joints_out = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
    _mark_requests()
    signal.signal(signal.SIGUSR2, _dumper(joints_out))
    app = web.Application()
    app["up"] = Upstream(host, up_port)
    app.router.add_post("/completion", completion)
    app.router.add_get("/", lambda _r: asyncio.sleep(0, web.Response(text="ok")))
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


if __name__ == "__main__":
    main()
