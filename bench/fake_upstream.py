"""Relay-capacity rig: a fake llama-server that streams `/completion` events as fast as it can,
and an ollamapy inference app (real routes, stand-in store/scheduler) proxying it.

Run as `python -m bench.fake_upstream upstream PORT EVENTS` or `... proxy PORT UPSTREAM_URL`;
the bench pins each to its own core.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
from aiohttp import web

from ollamapy.errors import NotFound, RunnerError
from ollamapy.server import keys, middleware
from ollamapy.server.routes import inference
from ollamapy.store.model import Model

EVENT = (b'data: {"index":0,"content":"tok","tokens":[1234],"stop":false,"id_slot":-1,'
         b'"tokens_predicted":1,"tokens_evaluated":5}\n\n')


def final_event(n: int) -> bytes:
    ev = {"index": 0, "content": "", "tokens": [], "stop": True, "stop_type": "limit",
          "tokens_predicted": n, "tokens_evaluated": 5, "truncated": False,
          "timings": {"cache_n": 0, "prompt_n": 5, "prompt_ms": 1.0, "predicted_n": n,
                      "predicted_ms": 1000.0}}
    return b"data: " + json.dumps(ev).encode() + b"\n\n"


def upstream_app(events: int) -> web.Application:
    async def completion(request: web.Request) -> web.StreamResponse:
        body = json.loads(await request.read())
        n = min(int(body.get("n_predict", events)), events)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        if n < 64:  # latency probe: the first event goes out on its own, at once
            for _ in range(n):
                await resp.write(EVENT)
        else:
            batch = EVENT * 64
            for _ in range(n // 64):
                await resp.write(batch)
            for _ in range(n % 64):
                await resp.write(EVENT)
        with contextlib.suppress(ConnectionError):  # the proxy may close after the stop event
            await resp.write(final_event(n))
            await resp.write_eof()
        return resp

    async def tokenize(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"tokens": [1, 2, 3]})

    app = web.Application()
    app.router.add_post("/completion", completion)
    app.router.add_post("/tokenize", tokenize)
    return app


class _Store:
    def __init__(self, model: Model) -> None:
        self.model = model

    def resolve(self, name: str) -> Model:
        if name != self.model.short_name:
            raise NotFound(f"model '{name}' not found")
        return self.model


class _Scheduler:
    def __init__(self, url: str, session: aiohttp.ClientSession) -> None:
        self.url = url
        self.session = session

    @asynccontextmanager
    async def lease(self, model: Model, options: Any, keep_alive: Any, *,
                    embedding: bool = False) -> AsyncIterator[SimpleNamespace]:
        yield SimpleNamespace(base_url=self.url, session=self.session, load_duration=0.0,
                              num_ctx=8192, props={}, model=model,
                              fail=lambda e: RunnerError(str(e)))


async def run_proxy(port: int, upstream: str) -> None:
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(keepalive_timeout=3))
    model = Model(name="registry.ollama.ai/library/fake:latest", short_name="fake:latest",
                  digest="0" * 64, model_path=Path("/nonexistent"), size=0,
                  modified_at=datetime.now(UTC), capabilities=("completion",))
    app = web.Application(middlewares=[middleware.errors])
    app[keys.STORE_KEY] = _Store(model)  # type: ignore[arg-type]
    app[keys.SCHEDULER_KEY] = _Scheduler(upstream, session)  # type: ignore[arg-type]
    inference.setup(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


async def run_upstream(port: int, events: int) -> None:
    runner = web.AppRunner(upstream_app(events), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


def main(argv: list[str]) -> None:
    kind, port = argv[0], int(argv[1])
    if kind == "upstream":
        asyncio.run(run_upstream(port, int(argv[2])))
    else:
        asyncio.run(run_proxy(port, argv[2]))


if __name__ == "__main__":
    main(sys.argv[1:])
