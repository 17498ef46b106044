"""The least an aiohttp front can do as a streaming proxy (`python -m bench floor` runs it):
POST /completion is read and sent on to one llama-server over a connection opened ahead of
time, and the upstream's bytes are written back as they come, unparsed (its chunk framing
included: the bench client only looks at `data: ` lines). No JSON, no validation, no
template, no scheduler: a lower bound on the wall time any aiohttp-based supervisor adds.

Usage: python -m bench.floor_proxy PORT UPSTREAM_HOST UPSTREAM_PORT
"""

from __future__ import annotations

import asyncio
import sys

import uvloop
from aiohttp import web


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
    up: Upstream = request.app["up"]
    body = await request.read()
    reader, writer = await up.take()
    auth = request.headers.get("Authorization", "")
    writer.write(b"POST /completion HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 b"Content-Type: application/json\r\nAuthorization: " + auth.encode()
                 + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    await reader.readuntil(b"\r\n\r\n")
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    while data := await reader.read(65536):
        await resp.write(data)
    writer.close()
    await resp.write_eof()
    return resp


def main() -> None:
    port, host, up_port = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    app = web.Application()
    app["up"] = Upstream(host, up_port)
    app.router.add_post("/completion", completion)
    app.router.add_get("/", lambda _r: asyncio.sleep(0, web.Response(text="ok")))
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


if __name__ == "__main__":
    main()
