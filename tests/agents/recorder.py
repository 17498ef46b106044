"""A loopback HTTP proxy that records every request an agent sends (method, path with query,
headers, body) before forwarding it to the real ollamapy server and streaming the answer back
unchanged. The agents suite asserts on what the agents sent; run it by hand with
`python -m tests.agents.recorder UPSTREAM PORT LOG.jsonl` to watch an agent."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web

HOP = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}


@dataclass
class Recorded:
    method: str
    path_qs: str
    headers: dict[str, str]
    body: bytes
    status: int = 0
    answer: bytes = b""  # the first 64 KiB of what the server answered

    def json(self) -> object:
        return json.loads(self.body) if self.body else None

    def as_log(self) -> dict[str, object]:
        return {"method": self.method, "path": self.path_qs, "headers": self.headers,
                "body": self.body.decode(errors="replace"), "status": self.status,
                "answer": self.answer[:4096].decode(errors="replace")}


@dataclass
class Recorder:
    upstream: str
    log_path: Path | None = None
    requests: list[Recorded] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        rec = Recorded(request.method, request.path_qs, dict(request.headers), body)
        self.requests.append(rec)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP}
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as s:
            async with s.request(request.method, self.upstream + request.path_qs,
                                 headers=headers, data=body or None) as up:
                rec.status = up.status
                out = web.StreamResponse(status=up.status, headers={
                    k: v for k, v in up.headers.items() if k.lower() not in HOP})
                await out.prepare(request)
                async for chunk in up.content.iter_any():
                    if len(rec.answer) < 65536:
                        rec.answer += chunk
                    await out.write(chunk)
                await out.write_eof()
        if self.log_path is not None:
            with self.log_path.open("a") as f:
                f.write(json.dumps(rec.as_log()) + "\n")
        return out


class RecordingProxy:
    """The recorder on its own event loop in a thread: usable from synchronous tests."""

    def __init__(self, upstream: str, log_path: Path | None = None) -> None:
        self.recorder = Recorder(upstream.rstrip("/"), log_path)
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def requests(self) -> list[Recorded]:
        return self.recorder.requests

    def __enter__(self) -> RecordingProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> None:
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/{tail:.*}", self.recorder.handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def main() -> None:
    upstream, port, log = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    app = web.Application(client_max_size=1 << 30)
    app.router.add_route("*", "/{tail:.*}", Recorder(upstream.rstrip("/"), log).handle)
    web.run_app(app, host="127.0.0.1", port=port, print=None)


if __name__ == "__main__":
    main()
