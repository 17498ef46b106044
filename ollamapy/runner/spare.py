"""One connection to a runner opened ahead of its next streamed /completion.

llama-server closes every streamed response's connection, so each completion needs a new one;
connecting costs ~0.2 ms on the path of the first token. A runner in use keeps one connection
open in the background, taken by the next completion (and replaced as it is taken). It is
never older than MAX_AGE_S: llama-server's HTTP layer drops a connection that sends no request
for 5 s, and an idle runner keeps no spare (it is replaced only when one is taken).
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit

from ollamapy.runner import sse_stream

MAX_AGE_S = 2.0
CONNECT_TIMEOUT_S = 10.0


class SpareConnection:
    __slots__ = ("_closed", "_host", "_opened", "_port", "_proto", "_task")

    def __init__(self, host: str, port: int) -> None:
        self._host = host
        self._port = port
        self._proto: sse_stream.SSEProtocol | None = None
        self._opened = 0.0
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def take(self) -> sse_stream.SSEProtocol | None:
        """The spare if it is still fresh and untouched (then a new one is opened), or None."""
        proto, self._proto = self._proto, None
        fresh = (proto is not None and sse_stream.unused(proto)
                 and asyncio.get_running_loop().time() - self._opened < MAX_AGE_S)
        if proto is not None and not fresh:
            proto.close()
            proto = None
        self.refill()
        return proto

    def refill(self) -> None:
        if self._closed or self._proto is not None or self._task is not None:
            return
        self._task = asyncio.get_running_loop().create_task(self._open())

    async def _open(self) -> None:
        try:
            proto = await sse_stream.connect(self._host, self._port, CONNECT_TIMEOUT_S)
        except sse_stream.StreamError:
            return  # the runner is gone or refusing: the next completion connects and says so
        finally:
            self._task = None
        if self._closed or self._proto is not None:
            proto.close()
            return
        self._proto = proto
        self._opened = asyncio.get_running_loop().time()

    def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self._proto is not None:
            with contextlib.suppress(Exception):
                self._proto.close()
            self._proto = None


def for_url(base_url: str) -> SpareConnection:
    u = urlsplit(base_url)
    return SpareConnection(u.hostname or "127.0.0.1", u.port or 80)
