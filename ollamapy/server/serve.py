"""`ollamapy serve`: bind (HTTP or HTTPS), tell systemd, run until SIGTERM/SIGINT, then shut
down in bounded time. SIGHUP re-reads the TLS certificate and key."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Coroutine
from typing import Any

from aiohttp import web

from ollamapy import OLLAMA_API_VERSION, __version__, pins
from ollamapy.config import Settings
from ollamapy.errors import ConfigError
from ollamapy.logs import kv
from ollamapy.server import tls
from ollamapy.server.app import create_app
from ollamapy.server.keys import SERVICES_KEY
from ollamapy.server.middleware import server_settings
from ollamapy.server.notify import Notifier

log = logging.getLogger("ollamapy.server")

SHUTDOWN_GRACE_S = 10.0


async def serve(settings: Settings) -> None:
    try:
        files = tls.tls_files(settings)
        ctx = tls.server_context(*files) if files else None
    except ConfigError as e:
        raise SystemExit(f"Error: {e}") from None
    app = create_app(settings)
    # The access log is ours (server/access.py): one line per request, no bodies or keys.
    runner = web.AppRunner(app, handle_signals=False, access_log=None,
                           shutdown_timeout=SHUTDOWN_GRACE_S,
                           **server_settings(settings.header_timeout))
    await runner.setup()  # starts the scheduler (cleanup context)
    hp = settings.host
    host: str | None = hp.host or None  # None = every interface (IPv4 and IPv6)
    site: web.BaseSite
    if ctx is not None:
        site = tls.SniffingTLSSite(runner, host, hp.port, ctx)
    else:
        site = web.TCPSite(runner, host=host, port=hp.port, reuse_address=True)
    try:
        await site.start()
    except OSError as e:
        await runner.cleanup()
        reason = e.strerror or str(e)
        raise SystemExit(f"Error: listen tcp {hp.host or ''}:{hp.port}: {reason}") from None
    log.info("server config", extra=kv(env=settings.redacted()))
    addrs = [f"{s.getsockname()[0]}:{s.getsockname()[1]}" for s in _sockets(site)]
    log.info("Listening on %s (version %s, Ollama API %s, llama.cpp %s, event loop %s, %s)",
             ", ".join(addrs) or hp.url, __version__, OLLAMA_API_VERSION,
             pins.llama_cpp().short_commit,
             type(asyncio.get_running_loop()).__module__.split(".")[0],
             "https" if ctx is not None else "http")
    notifier = Notifier()
    scheduler = app[SERVICES_KEY].scheduler

    def loaded() -> list[str]:
        return [s.model.short_name for s in scheduler.ps()]

    notifier.ready(loaded())
    notifier.start(loaded)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if ctx is not None and files is not None:
        loop.add_signal_handler(signal.SIGHUP, tls.reload, ctx, *files)
    else:  # `systemctl reload` must not kill a plain-HTTP server
        loop.add_signal_handler(signal.SIGHUP, log.info, "SIGHUP: nothing to reload (no TLS)")
    try:
        await stop.wait()
        log.info("shutting down")
    finally:
        notifier.stopping()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        await notifier.close()
        await runner.cleanup()
        log.info("server stopped")


def _sockets(site: web.BaseSite) -> list[socket.socket]:
    if isinstance(site, tls.SniffingTLSSite):
        return site.sockets
    server = site._server  # aiohttp exposes no public accessor for the bound sockets
    return list(getattr(server, "sockets", None) or [])


def run_on_server_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run `main` on uvloop where it is installed: measured ~1-4 ms less time-to-first-token
    per proxied request than the default loop (bench/RESULTS.md); the default loop otherwise.
    The bench's relay rig runs on it too, so it measures the loop users get."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)


def run(settings: Settings) -> None:
    run_on_server_loop(serve(settings))
