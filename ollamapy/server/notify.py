"""systemd's notify protocol (sd_notify(3)): one datagram per state change to $NOTIFY_SOCKET.

`READY=1` once the socket is bound and the scheduler runs, `STATUS=...` with the loaded models,
`WATCHDOG=1` from the event loop every half `WATCHDOG_USEC` (a wedged loop stops the pings and
systemd restarts the unit), `STOPPING=1` when shutdown begins. Without $NOTIFY_SOCKET every call
is a no-op, so `ollamapy serve` outside systemd pays nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Mapping

from ollamapy.logs import kv

log = logging.getLogger("ollamapy.server")

STATUS_INTERVAL_S = 5.0


def socket_address(value: str | None) -> str | bytes | None:
    """$NOTIFY_SOCKET -> an AF_UNIX address: a path, or `@name` for the abstract namespace."""
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None  # vsock and other forms: not supported, and not what systemd gives services


def watchdog_interval(environ: Mapping[str, str], pid: int | None = None) -> float | None:
    """Seconds between pings (half of WATCHDOG_USEC), or None when no watchdog applies to us."""
    usec = environ.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    want_pid = environ.get("WATCHDOG_PID", "")
    if want_pid and want_pid.isdigit() and int(want_pid) != (pid or os.getpid()):
        return None
    return int(usec) / 1e6 / 2


def status_line(models: list[str]) -> str:
    if not models:
        return "STATUS=ready, no models loaded"
    return f"STATUS=ready, {len(models)} loaded: {', '.join(models)}"[:512]


class Notifier:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = socket_address(env.get("NOTIFY_SOCKET"))
        self.watchdog_s = watchdog_interval(env) if self.address is not None else None
        self._sock: socket.socket | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._last_status = ""

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *fields: str) -> bool:
        """One datagram of newline-separated `KEY=value` fields. False if it did not go out."""
        if self.address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto("\n".join(fields).encode(), self.address)
            return True
        except OSError as e:  # systemd gone or socket full: never fatal for the server
            log.debug("sd_notify failed", extra=kv(error=e))
            return False

    def ready(self, models: list[str]) -> None:
        self._last_status = status_line(models)
        self.send("READY=1", self._last_status)

    def status(self, models: list[str]) -> None:
        line = status_line(models)
        if line != self._last_status:
            self._last_status = line
            self.send(line)

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=shutting down")

    def start(self, loaded: Callable[[], list[str]]) -> None:
        """Watchdog pings and status updates, both from the event loop."""
        if self.address is None:
            return
        self._tasks.append(asyncio.create_task(self._status_loop(loaded), name="sd-status"))
        if self.watchdog_s is not None:
            self._tasks.append(asyncio.create_task(self._watchdog_loop(self.watchdog_s),
                                                   name="sd-watchdog"))

    async def _watchdog_loop(self, interval: float) -> None:
        while True:
            self.send("WATCHDOG=1")
            await asyncio.sleep(interval)

    async def _status_loop(self, loaded: Callable[[], list[str]]) -> None:
        while True:
            await asyncio.sleep(STATUS_INTERVAL_S)
            self.status(loaded())

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except asyncio.CancelledError:
                pass
        self._tasks.clear()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
