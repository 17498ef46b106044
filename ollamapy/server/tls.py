"""HTTPS for `ollamapy serve`: OLLAMAPY_TLS_CERT + OLLAMAPY_TLS_KEY.

One SSLContext for the server's life: `reload()` (SIGHUP) calls load_cert_chain on it again, which
applies to new handshakes only, so open connections are never dropped. The site peeks at each new
connection's first byte: a TLS ClientHello is handed to aiohttp over TLS, anything else (a plain
HTTP request to the HTTPS port) gets Go's `400 Client sent an HTTP request to an HTTPS server.`
and is closed, with no traceback in the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from aiohttp import web

from ollamapy.config import Settings
from ollamapy.errors import ConfigError
from ollamapy.logs import kv

log = logging.getLogger("ollamapy.server")

TLS_HANDSHAKE_RECORD = 0x16
FIRST_BYTE_TIMEOUT_S = 30.0
HANDSHAKE_TIMEOUT_S = 30.0
PLAIN_HTTP_REPLY = (b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
                    b"Connection: close\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")


def tls_files(settings: Settings) -> tuple[Path, Path] | None:
    """(cert, key), None for plain HTTP; one without the other is a configuration error."""
    cert, key = settings.tls_cert, settings.tls_key
    if not cert and not key:
        return None
    if not cert or not key:
        raise ConfigError("OLLAMAPY_TLS_CERT and OLLAMAPY_TLS_KEY must be set together")
    return Path(cert), Path(key)


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """The standard library's secure server defaults, TLS 1.2 at least, HTTP/1.1 over ALPN."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    load(ctx, cert, key)
    return ctx


def load(ctx: ssl.SSLContext, cert: Path, key: Path) -> None:
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(f"cannot load TLS certificate {cert} / key {key}: {e}") from None


def reload(ctx: ssl.SSLContext, cert: Path, key: Path) -> bool:
    """Re-read the files into the live context; a bad new pair keeps the old one serving."""
    try:
        load(ctx, cert, key)
    except ConfigError as e:
        log.error("TLS reload failed, keeping the previous certificate", extra=kv(error=e))
        return False
    log.info("TLS certificate reloaded", extra=kv(cert=cert))
    return True


class _Listeners:
    """What BaseSite.stop() closes: the listening sockets and their accept loops."""

    def __init__(self) -> None:
        self.sockets: list[socket.socket] = []
        self.tasks: set[asyncio.Task[None]] = set()

    def close(self) -> None:
        for t in list(self.tasks):
            t.cancel()
        for s in self.sockets:
            s.close()


class SniffingTLSSite(web.BaseSite):
    """A TCP site that serves TLS and answers plain HTTP with a clean 400."""

    __slots__ = ("_host", "_listeners", "_port")

    def __init__(self, runner: web.BaseRunner, host: str | None, port: int,
                 ssl_context: ssl.SSLContext, backlog: int = 128) -> None:
        super().__init__(runner, ssl_context=ssl_context, backlog=backlog)
        self._host = host
        self._port = port
        self._listeners = _Listeners()

    @property
    def name(self) -> str:
        return f"https://{self._host or '0.0.0.0'}:{self._port}"

    @property
    def sockets(self) -> list[socket.socket]:
        return self._listeners.sockets

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(self._host, self._port, type=socket.SOCK_STREAM,
                                       flags=socket.AI_PASSIVE)
        seen: set[tuple[int, object]] = set()
        try:
            for family, stype, proto, _, addr in infos:
                if (family, addr) in seen:
                    continue
                seen.add((family, addr))
                s = socket.socket(family, stype, proto)
                self._listeners.sockets.append(s)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                s.bind(addr)
                s.listen(self._backlog)
                s.setblocking(False)
        except OSError:
            self._listeners.close()
            raise
        self._server = self._listeners  # type: ignore[assignment]  # BaseSite.stop closes it
        for s in self._listeners.sockets:
            self._spawn(self._accept_loop(s))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._listeners.tasks.add(task)
        task.add_done_callback(self._listeners.tasks.discard)

    async def _accept_loop(self, lsock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _ = await loop.sock_accept(lsock)
            except OSError as e:  # EMFILE and the like: back off instead of spinning
                log.warning("accept failed", extra=kv(error=e))
                await asyncio.sleep(0.1)
                continue
            conn.setblocking(False)
            self._spawn(self._sniff(conn))

    async def _sniff(self, conn: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        handed_over = False
        try:
            first = await asyncio.wait_for(_peek(loop, conn), FIRST_BYTE_TIMEOUT_S)
            if not first:
                return
            if first[0] != TLS_HANDSHAKE_RECORD:
                log.debug("plain HTTP on the HTTPS port, answered 400")
                with contextlib.suppress(OSError):
                    _drain(conn)  # unread request bytes would turn our close into a reset
                    await loop.sock_sendall(conn, PLAIN_HTTP_REPLY)
                    conn.shutdown(socket.SHUT_WR)
                return
            server = self._runner.server
            assert server is not None and self._ssl_context is not None
            handed_over = True
            await loop.connect_accepted_socket(server, conn, ssl=self._ssl_context,
                                               ssl_handshake_timeout=HANDSHAKE_TIMEOUT_S)
        except (OSError, TimeoutError, ssl.SSLError) as e:
            log.debug("TLS connection failed", extra=kv(error=e))
        finally:
            if not handed_over:
                conn.close()


async def _peek(loop: asyncio.AbstractEventLoop, conn: socket.socket) -> bytes:
    """The first byte without consuming it (the TLS layer must still read the ClientHello)."""
    while True:
        try:
            return conn.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            pass
        fut: asyncio.Future[None] = loop.create_future()
        loop.add_reader(conn.fileno(), _wake, fut)
        try:
            await fut
        finally:
            loop.remove_reader(conn.fileno())


def _drain(conn: socket.socket, limit: int = 65536) -> None:
    """Read what the client already sent (bounded, non-blocking)."""
    got = 0
    while got < limit:
        try:
            chunk = conn.recv(min(16384, limit - got))
        except BlockingIOError:
            return
        if not chunk:
            return
        got += len(chunk)


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
