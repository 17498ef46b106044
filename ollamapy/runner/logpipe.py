"""The runner's merged stdout/stderr, read in batches.

llama-server writes each log line in up to three pieces (timestamp, level letter, message), and
~21 lines per request at the verbosity ollamapy runs it with: read as they came, that was most
of ~68 event-loop wake-ups per request (strace), many of them between the upstream POST and the
first token. Here, once the runner is ready, the pipe is read once, then paused for BATCH_S
while the kernel's pipe buffer collects the next pieces, so a burst of lines costs one wake-up.
While it loads, its lines are read as they come: its "listening" line ends the health poll's
wait (process.py).

The pause must never fill the pipe: this llama.cpp logs through a bounded queue whose callers
(its compute and HTTP threads) block when it is full, and its log thread blocks on a full pipe.
A 16-request burst logs ~60 KB at once, more than a default 64 KiB pipe holds for 50 ms:
llama-server then answered such a burst 2.3x slower (bench/RESULTS.md, fourth round). So the
runner writes into a pipe made here and grown to PIPE_BYTES; where it cannot grow (not Linux,
the user's pipe quota spent) nothing pauses. A large read (EAGER_BYTES) is not followed by a
pause either.

Lines are handed over whole and synchronously (no task, no StreamReader); a line longer than
MAX_LINE is cut there and the rest of it skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import Callable
from typing import Any, Protocol, cast

BATCH_S = 0.05
# A read this large means the log is busy (a burst, a debug log under load): read on at once.
EAGER_BYTES = 16 * 1024
MAX_LINE = 64 * 1024
# The pipe's buffer: ~10,000 lines, what llama-server logs in seconds of a busy burst.
PIPE_BYTES = 1 << 20
MIN_BATCH_PIPE = 256 * 1024  # a smaller pipe is read eagerly (no pause)
_PIPE_MAX_SIZE = "/proc/sys/fs/pipe-max-size"


def grow_pipe(fd: int, size: int = PIPE_BYTES) -> int:
    """Grow the pipe behind `fd` towards `size` (at most fs.pipe-max-size); the bytes it holds
    afterwards, 0 where that is unknown (no F_SETPIPE_SZ: not Linux)."""
    setsz = getattr(fcntl, "F_SETPIPE_SZ", None)
    if setsz is None:
        return 0
    with contextlib.suppress(OSError, ValueError), open(_PIPE_MAX_SIZE) as f:
        size = min(size, int(f.read()))
    try:
        return int(fcntl.fcntl(fd, setsz, size))
    except OSError:  # over the user's pipe quota (fs.pipe-user-pages-soft): left as it was
        getsz = getattr(fcntl, "F_GETPIPE_SZ", None)
        with contextlib.suppress(OSError):
            return int(fcntl.fcntl(fd, getsz)) if getsz is not None else 0
        return 0


def log_pipe() -> tuple[int, int, bool]:
    """(read fd, write fd, batch): a pipe for a child's log, grown; `batch` when it is big
    enough for LogPipe to pause between reads. The caller owns both ends."""
    r, w = os.pipe()
    return r, w, grow_pipe(w) >= MIN_BATCH_PIPE


class _Reader(asyncio.Protocol):
    """The read end's protocol: hands everything to its LogPipe."""

    def __init__(self, owner: LogPipe) -> None:
        self._owner = owner

    def data_received(self, data: bytes) -> None:
        self._owner.received(data)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._owner.ended()


def _close_made(made: asyncio.Future[tuple[asyncio.ReadTransport, Any]]) -> None:
    if not made.cancelled() and made.exception() is None:
        made.result()[0].close()


class _Pausable(Protocol):
    """A pipe's read transport (uvloop's are not asyncio.ReadTransport subclasses)."""

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def is_closing(self) -> bool: ...


class LogPipe(asyncio.SubprocessProtocol):
    """The protocol of a child whose stdout (stderr merged in) is its log: a pipe of
    `log_pipe`'s, whose read end `read_from` takes over. `can_batch`: the pipe is big enough
    to pause between reads, which `batch` turns on (a loading runner's lines come at once: its
    "listening" line is what tells the health poll to look now)."""

    def __init__(self, can_batch: bool = True) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._can_batch = can_batch
        self._batch = False
        self._on_lines: Callable[[list[bytes]], None] | None = None
        self._early: list[bytes] = []  # lines read before `attach`
        self._transport: asyncio.SubprocessTransport | None = None
        self._reader: asyncio.ReadTransport | None = None
        self._partial = b""
        self._skipping = False  # inside an over-long line, until its newline
        self._resume: asyncio.TimerHandle | None = None
        self.exited: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()  # the pipe's EOF

    def batch(self) -> None:
        """From now on, pause after each small read (when the pipe allows it)."""
        self._batch = self._can_batch

    async def read_from(self, fd: int) -> None:
        """Read the log from `fd`, the pipe's read end (owned from here on, closed with it).

        The connect is shielded: cancelled half-way, uvloop closes the fd itself and the file
        object would close it again (a number that may belong to a new socket by then). So a
        cancel lets the reader be made, and closes it then."""
        f = os.fdopen(fd, "rb", buffering=0)  # the reader's, and with it the fd, once made
        made = asyncio.ensure_future(self._loop.connect_read_pipe(lambda: _Reader(self), f))
        try:
            transport, _ = await asyncio.shield(made)
        except asyncio.CancelledError:
            made.add_done_callback(_close_made)
            raise
        self._reader = transport

    def close(self) -> None:
        """Stop reading (the child left the pipe open to a grandchild, or is gone)."""
        if self._reader is not None:
            self._reader.close()

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

    def received(self, data: bytes) -> None:
        """Bytes from the log pipe (its reader's data_received)."""
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
        if self._batch and len(data) < EAGER_BYTES:
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
        pipe = self._reader
        return cast(_Pausable, pipe) if hasattr(pipe, "pause_reading") else None

    def ended(self) -> None:
        """The log pipe's end: every writer closed it (its reader's connection_lost)."""
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
        # the process is gone (some loops report only this); the log pipe is not the
        # transport's, so it ends on its own, unless it never was read
        futs = (self.exited,) if self._reader is not None else (self.closed, self.exited)
        for fut in futs:
            if not fut.done():
                fut.set_result(None)
