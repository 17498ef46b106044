"""A streamed POST to llama-server on a bare asyncio protocol: one pre-built request, and the
response's HTTP framing (chunked, Content-Length or read-to-close) and SSE lines decoded
straight from `data_received`.

Why not aiohttp's client here: llama-server answers every streamed `/completion` with
`Connection: close`, so nothing can be pooled, and a general client per request costs more
than the hop itself (session request setup, header objects, StreamReader, iter_any). This
module does only what that one exchange needs: the response head is parsed strictly (status
line, Content-Length, Transfer-Encoding), lines are capped at MAX_LINE bytes, and reading
pauses while more than HIGH_WATER bytes of decoded lines wait for the consumer (the same
back-pressure a StreamReader gives).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import cast

CONNECT_TIMEOUT_S = 10.0  # as the scheduler's session (sock_connect)
MAX_HEAD = 64 * 1024
MAX_LINE = 64 * 1024 * 1024
HIGH_WATER = 256 * 1024

READ_END = b""
"""Queued after the lines of each upstream read (never a line itself: empty lines are
dropped)."""


class StreamError(Exception):
    """The upstream connection failed or sent something that is not HTTP/SSE."""


class Head:
    __slots__ = ("chunked", "length", "status")

    def __init__(self, status: int, chunked: bool, length: int | None) -> None:
        self.status = status
        self.chunked = chunked
        self.length = length


def _header(low: bytes, name: bytes) -> bytes | None:
    """The value of header `name` in a lowercased response head, or None."""
    i = low.find(b"\r\n" + name + b":")
    if i < 0:
        return None
    start = i + len(name) + 3
    end = low.find(b"\r\n", start)
    return low[start:end if end >= 0 else len(low)].strip()


def parse_head(raw: bytes) -> Head:
    """Status line and the framing headers of an HTTP/1.x response head (without the blank
    line); only the two headers that frame the body are looked at."""
    line_end = raw.find(b"\r\n")
    parts = raw[:line_end if line_end >= 0 else len(raw)].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise StreamError(f"bad status line {raw[:80]!r}")
    low = raw.lower()
    te = _header(low, b"transfer-encoding")
    chunked = te is not None and b"chunked" in te
    length: int | None = None
    cl = _header(low, b"content-length")
    if cl is not None and not chunked:
        if not cl.isdigit():
            raise StreamError("bad Content-Length")
        length = int(cl)
    return Head(int(parts[1]), chunked, length)


class SSEProtocol(asyncio.Protocol):
    """Decodes one HTTP response into non-empty body lines (`lines`), READ_END after each
    read; `head` is set once the response head is in."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *, whole: bool = False) -> None:
        self._loop = loop
        self.body: list[bytes] | None = [] if whole else None  # whole: the body, unsplit
        self.body_size = 0
        self.transport: asyncio.Transport | None = None
        self.head: Head | None = None
        self.lines: deque[bytes] = deque()
        self.queued = 0  # bytes in `lines`
        self.done = False  # the body ended (last chunk, length reached, or EOF)
        self.error: BaseException | None = None
        self._buf = b""  # undecoded bytes (head, chunk framing)
        self._line = b""  # start of a body line whose newline has not come yet
        self._chunk_left = 0  # body bytes left in the current chunk / Content-Length
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self.received = False  # a byte came in
        self.eof = False  # the peer closed (or the connection was lost)

    # -------------------------------------------------------------- transport side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        self.received = True
        try:
            self._feed(data)
        except StreamError as e:
            self._fail(e)
            return
        if self.body is None:  # splitting into lines (a whole body has no reads to mark)
            self.lines.append(READ_END)
        if self.queued > HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._end_of_stream()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        if exc is not None and not self.done and self.error is None:
            self.error = StreamError(str(exc) or type(exc).__name__)
        self._end_of_stream()

    def _end_of_stream(self) -> None:
        if not self.done and self.error is None:
            if self.head is not None and not self.head.chunked and self.head.length is None:
                self._flush_line()  # read-to-close body: EOF ends it
                self.done = True
            else:
                self.error = StreamError("connection closed before the response ended")
        self._wake()

    def _fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
        if self.transport is not None:
            self.transport.close()
        self._wake()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    # -------------------------------------------------------------- decoding

    def _feed(self, data: bytes) -> None:
        if self.done:
            return
        if self.head is None:
            self._buf += data
            i = self._buf.find(b"\r\n\r\n")
            if i < 0:
                if len(self._buf) > MAX_HEAD:
                    raise StreamError("response head too large")
                return
            self.head = parse_head(self._buf[:i])
            data, self._buf = self._buf[i + 4:], b""
            if self.head.length is not None:
                self._chunk_left = self.head.length
                if self._chunk_left == 0:
                    self.done = True
                    return
        head = self.head
        if not head.chunked:
            if head.length is not None:
                data = data[:self._chunk_left]
                self._chunk_left -= len(data)
            self._body(data)
            if head.length is not None and self._chunk_left == 0:
                self._flush_line()
                self.done = True
            return
        buf = self._buf + data if self._buf else data
        pos = 0
        n = len(buf)
        while pos < n:
            if self._chunk_left > 0:
                end = min(n, pos + self._chunk_left)
                self._body(buf[pos:end])
                self._chunk_left -= end - pos
                pos = end
                continue
            # at a chunk boundary: [CRLF after the previous chunk] size [;ext] CRLF
            j = buf.find(b"\r\n", pos)
            if j < 0:
                break
            if j == pos:  # the CRLF that ends a chunk's data
                pos += 2
                continue
            size_field = buf[pos:j].split(b";", 1)[0].strip()
            try:
                size = int(size_field, 16)
            except ValueError:
                raise StreamError("bad chunk size") from None
            pos = j + 2
            if size == 0:
                self._flush_line()
                self.done = True
                self._buf = b""
                return
            self._chunk_left = size
        self._buf = buf[pos:]
        if len(self._buf) > MAX_HEAD:
            raise StreamError("bad chunked framing")

    def _body(self, data: bytes) -> None:
        """Split body bytes into lines (LF; a trailing CR is dropped), keeping a partial one."""
        if self.body is not None:
            self.body.append(data)
            self.body_size += len(data)
            if self.body_size > MAX_LINE:
                raise StreamError("oversized response")
            return
        if self._line:
            data = self._line + data
            self._line = b""
        start = 0
        while True:
            i = data.find(b"\n", start)
            if i < 0:
                break
            if i > start:
                line = data[start:i]
                if line[-1:] == b"\r":
                    line = line[:-1]
                if line:
                    self.lines.append(line)
                    self.queued += len(line)
            start = i + 1
        if start < len(data):
            self._line = data[start:]
            if len(self._line) > MAX_LINE:
                raise StreamError("oversized event")

    def _flush_line(self) -> None:
        line = self._line.rstrip(b"\r")
        self._line = b""
        if line.strip():
            self.lines.append(line)
            self.queued += len(line)

    # -------------------------------------------------------------- consumer side

    async def wait(self) -> None:
        """Until there is a line, the body has ended, or the connection failed."""
        if self.lines or self.done or self.error is not None:
            return
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        self._waiter = self._loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def pop(self) -> bytes:
        line = self.lines.popleft()
        self.queued -= len(line)
        if self._paused and self.queued <= HIGH_WATER // 4 and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return line

    async def read_body(self, limit: int = 1024 * 1024) -> bytes:
        """The rest of the body (error responses), lines joined, at most `limit` bytes."""
        out: list[bytes] = []
        size = 0
        while True:
            await self.wait()
            while self.lines:
                line = self.pop()
                if line:
                    out.append(line)
                    size += len(line)
            if self.error is not None or self.done or size > limit:
                return b"\n".join(out)[:limit]

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def connect(host: str, port: int, connect_timeout: float, *,
                  whole: bool = False) -> SSEProtocol:
    """A connection with nothing sent on it yet. `whole`: the body will be collected unsplit
    in `.body` (see `fetch`)."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(connect_timeout):  # no extra task, unlike wait_for
            _, proto = await loop.create_connection(lambda: SSEProtocol(loop, whole=whole),
                                                    host, port)
    except (TimeoutError, OSError) as e:
        raise StreamError(f"cannot connect to {host}:{port}: {e or type(e).__name__}") from None
    assert proto.transport is not None
    return proto


def unused(proto: SSEProtocol) -> bool:
    """Connected, and nothing came back on it (not even the peer's close)."""
    tr = proto.transport
    return (tr is not None and not tr.is_closing() and not proto.received and not proto.eof
            and proto.error is None and not proto.done)


async def send(proto: SSEProtocol, request: bytes) -> SSEProtocol:
    """Send `request` (a complete HTTP/1.1 request) on a fresh connection and wait for the
    response head."""
    assert proto.transport is not None
    try:
        proto.transport.write(request)
        while proto.head is None:
            if proto.error is not None:
                raise proto.error
            if proto.done:
                raise StreamError("connection closed before the response head")
            await proto.wait()
            while proto.lines and proto.lines[0] == READ_END:
                proto.pop()
    except BaseException:
        proto.close()
        raise
    return proto


async def open_stream(host: str, port: int, request: bytes, connect_timeout: float, *,
                      whole: bool = False) -> SSEProtocol:
    """Connect, send `request` (a complete HTTP/1.1 request), and wait for the response head.
    `whole`: the body is collected unsplit in `.body` (see `fetch`)."""
    return await send(await connect(host, port, connect_timeout, whole=whole), request)


async def fetch(host: str, port: int, request: bytes, connect_timeout: float
                ) -> tuple[int, bytes]:
    """One request with a whole (not streamed) answer -> (status, body)."""
    proto = await open_stream(host, port, request, connect_timeout, whole=True)
    try:
        assert proto.head is not None and proto.body is not None
        while not proto.done:
            if proto.error is not None:
                raise proto.error
            await proto.wait()
        return proto.head.status, b"".join(proto.body)
    finally:
        proto.close()
