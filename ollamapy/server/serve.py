"""`ollamapy serve`: bind, run until SIGTERM/SIGINT, then shut down in bounded time."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket

from aiohttp import web

from ollamapy import OLLAMA_API_VERSION, __version__, pins
from ollamapy.config import Settings
from ollamapy.logs import kv
from ollamapy.server.app import create_app
from ollamapy.server.middleware import server_settings

log = logging.getLogger("ollamapy.server")

SHUTDOWN_GRACE_S = 10.0


async def serve(settings: Settings) -> None:
    app = create_app(settings)
    runner = web.AppRunner(app, handle_signals=False, access_log=logging.getLogger(
        "aiohttp.access"), shutdown_timeout=SHUTDOWN_GRACE_S,
        **server_settings(settings.header_timeout))
    await runner.setup()
    hp = settings.host
    host: str | None = hp.host or None  # None = every interface (IPv4 and IPv6)
    site = web.TCPSite(runner, host=host, port=hp.port, reuse_address=True)
    try:
        await site.start()
    except OSError as e:
        await runner.cleanup()
        reason = e.strerror or str(e)
        raise SystemExit(f"Error: listen tcp {hp.host or ''}:{hp.port}: {reason}") from None
    log.info("server config", extra=kv(env=settings.redacted()))
    addrs = [f"{s.getsockname()[0]}:{s.getsockname()[1]}" for s in _sockets(site)]
    log.info("Listening on %s (version %s, Ollama API %s, llama.cpp %s, event loop %s)",
             ", ".join(addrs) or hp.url, __version__, OLLAMA_API_VERSION,
             pins.llama_cpp().short_commit,
             type(asyncio.get_running_loop()).__module__.split(".")[0])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
        log.info("shutting down")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await runner.cleanup()
        log.info("server stopped")


def _sockets(site: web.TCPSite) -> list[socket.socket]:
    server = site._server  # aiohttp exposes no public accessor for the bound sockets
    return list(getattr(server, "sockets", None) or [])


def run(settings: Settings) -> None:
    """Serve on uvloop where it is installed: measured ~1-4 ms less time-to-first-token per
    proxied request than the default loop (bench/RESULTS.md); the default loop otherwise."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(settings))
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(settings))
