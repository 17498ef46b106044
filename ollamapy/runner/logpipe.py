"""The runner's merged stdout/stderr, read in batches.

llama-server writes each log line in up to three pieces (timestamp, level letter, message), and
~21 lines per request at the verbosity ollamapy runs it with: read as they came, that was most
of ~68 event-loop wake-ups per request (strace), many of them between the upstream POST and the
first token. Here the
pipe is read once, then paused for BATCH_S while the kernel's pipe buffer collects the next
pieces, so a burst of lines costs one wake-up. A large read (EAGER_BYTES) is not followed by a
pause: llama.cpp logs through a bounded queue whose callers block when it is full, so the
pipe must keep draining when the log is busy.

Lines are handed over whole and synchronously (no task, no StreamReader); a line longer than
MAX_LINE is cut there and the rest of it skipped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol, cast

BATCH_S = 0.05
# A read this large means the log is busy (a burst, a debug log under load): read on at once,
# so the pause never holds the child's log thread (this llama.cpp's log queue blocks its
# callers when full) for long.
EAGER_BYTES = 16 * 1024
MAX_LINE = 64 * 1024
STDOUT = 1


class _Pausable(Protocol):
    """A pipe's read transport (uvloop's are not asyncio.ReadTransport subclasses)."""

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def is_closing(self) -> bool: ...


class LogPipe(asyncio.SubprocessProtocol):
    """The protocol of a child whose stdout (stderr merged in) is its log."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._on_lines: Callable[[list[bytes]], None] | None = None
        self._early: list[bytes] = []  # lines read before `attach`
        self._transport: asyncio.SubprocessTransport | None = None
        self._partial = b""
        self._skipping = False  # inside an over-long line, until its newline
        self._resume: asyncio.TimerHandle | None = None
        self.exited: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()  # the pipe's EOF

    def attach(self, on_lines: Callable[[list[bytes]], None]) -> None:
        """Where lines go from now on (those read so far go there first)."""
        self._on_lines = on_lines
        early, self._early = self._early, []
        if early:
            on_lines(early)

    def _deliver(self, lines: list[bytes]) -> None:
        if self._on_lines is None:
            self._early.extend(lines)
        else:
            self._on_lines(lines)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.SubprocessTransport, transport)

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if fd != STDOUT:
            return
        buf = self._partial + data if self._partial else data
        lines = buf.split(b"\n")
        self._partial = lines.pop()
        if len(buf) > MAX_LINE:
            lines = [line[:MAX_LINE] for line in lines]
        if self._skipping and lines:
            lines.pop(0)  # the end of the over-long line
            self._skipping = False
        if len(self._partial) > MAX_LINE and not self._skipping:
            lines.append(self._partial[:MAX_LINE])
            self._skipping = True
        if self._skipping:
            self._partial = b""
        if lines:
            self._deliver(lines)
        if len(data) < EAGER_BYTES:
            self._pause()

    def _pause(self) -> None:
        pipe = self._pipe()
        if pipe is None or self._resume is not None:
            return
        pipe.pause_reading()
        self._resume = self._loop.call_later(BATCH_S, self._resume_reading)

    def _resume_reading(self) -> None:
        self._resume = None
        pipe = self._pipe()
        if pipe is not None and not pipe.is_closing():
            pipe.resume_reading()

    def _pipe(self) -> _Pausable | None:
        if self._transport is None:
            return None
        pipe = self._transport.get_pipe_transport(STDOUT)
        return cast(_Pausable, pipe) if hasattr(pipe, "pause_reading") else None

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd != STDOUT:
            return
        if self._resume is not None:
            self._resume.cancel()
            self._resume = None
        if self._partial and not self._skipping:
            self._deliver([self._partial])
        self._partial = b""
        if not self.closed.done():
            self.closed.set_result(None)
        self._maybe_close()

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)
        self._maybe_close()

    def _maybe_close(self) -> None:
        """Exited and read to the end: the transport is done (as asyncio.subprocess does)."""
        if self.exited.done() and self.closed.done() and self._transport is not None:
            self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        # every pipe is closed and the process is gone (some loops report only this)
        for fut in (self.closed, self.exited):
            if not fut.done():
                fut.set_result(None)
