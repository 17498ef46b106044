"""One connection to a runner opened ahead of its next streamed /completion.

llama-server closes every streamed response's connection, so each completion needs a new one;
connecting costs ~0.2 ms on the path of the first token. A runner in use keeps one connection
open in the background, taken by the next completion. It is never older than MAX_AGE_S:
llama-server's HTTP layer drops a connection that sends no request for 5 s. It is replaced only
while the runner is busy (the previous completion came less than MAX_AGE_S before, or the
runner has just started): requests further apart would pay for a connect each that nobody uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from ollamapy.runner import sse_stream

MAX_AGE_S = 2.0


class SpareConnection:
    __slots__ = ("_closed", "_host", "_last_take", "_opened", "_port", "_proto", "_task")

    def __init__(self, host: str, port: int) -> None:
        self._host = host
        self._port = port
        self._proto: sse_stream.SSEProtocol | None = None
        self._opened = 0.0
        self._last_take = time.monotonic()  # made when its runner is ready: about to be used
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def take(self) -> sse_stream.SSEProtocol | None:
        """The spare if it is still fresh and untouched, or None; a new one is opened while
        the runner is busy."""
        now = time.monotonic()
        busy = now - self._last_take < MAX_AGE_S
        self._last_take = now
        proto, self._proto = self._proto, None
        if proto is not None and not (sse_stream.unused(proto)
                                      and now - self._opened < MAX_AGE_S):
            proto.close()
            proto = None
        if busy:
            self.refill()
        return proto

    def refill(self) -> None:
        if self._closed or self._proto is not None or self._task is not None:
            return
        self._task = asyncio.get_running_loop().create_task(self._open())

    async def _open(self) -> None:
        try:
            proto = await sse_stream.connect(self._host, self._port, sse_stream.CONNECT_TIMEOUT_S)
        except sse_stream.StreamError:
            return  # the runner is gone or refusing: the next completion connects and says so
        finally:
            self._task = None
        if self._closed or self._proto is not None:
            proto.close()
            return
        self._proto = proto
        self._opened = time.monotonic()

    def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self._proto is not None:
            with contextlib.suppress(Exception):
                self._proto.close()
            self._proto = None

