"""Relay-capacity rig: the shared fake llama-server (tests/fake_runner.py) streaming
`/completion` events as fast as it can, and an ollamapy inference app (real routes and engine,
stand-in store/scheduler) proxying it.

Run as `python -m bench.fake_upstream upstream PORT EVENTS` or `... proxy PORT UPSTREAM_URL`;
the bench pins each to its own core.
"""

from __future__ import annotations

import asyncio
import sys

import aiohttp
from aiohttp import web

from ollamapy.server import keys, middleware
from ollamapy.server.routes import inference
from ollamapy.server.serve import run_on_server_loop
from tests.fake_runner import FakeRunner, FakeScheduler, FakeStore, fake_model


async def run_proxy(port: int, upstream: str) -> None:
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(keepalive_timeout=3))
    store = FakeStore({"fake:latest": fake_model("fake:latest")})
    app = web.Application(middlewares=[middleware.errors])
    app[keys.STORE_KEY] = store  # type: ignore[arg-type]
    app[keys.SCHEDULER_KEY] = FakeScheduler(  # type: ignore[arg-type]
        session, {"gen": upstream}, num_ctx={"gen": 8192})
    inference.setup(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


async def run_upstream(port: int, events: int) -> None:
    await FakeRunner(fast_events=events).start(port)
    await asyncio.Event().wait()


def main(argv: list[str]) -> None:
    kind, port = argv[0], int(argv[1])
    if kind == "upstream":
        asyncio.run(run_upstream(port, int(argv[2])))
    else:
        run_on_server_loop(run_proxy(port, argv[2]))  # the loop `ollamapy serve` runs on


if __name__ == "__main__":
    main(sys.argv[1:])
