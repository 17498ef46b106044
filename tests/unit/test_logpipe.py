"""The runner's log pipe (runner/logpipe.py): grown so that a burst of llama-server log lines
never fills it (a full pipe blocks llama.cpp's log thread, then its compute threads), read in
batches only when it is that big, every line delivered in order, its end reported."""

from __future__ import annotations

import asyncio
import fcntl
import os
import subprocess
import sys

import pytest

from ollamapy.runner.logpipe import MIN_BATCH_PIPE, PIPE_BYTES, LogPipe, grow_pipe, log_pipe

linux_only = pytest.mark.skipif(not hasattr(fcntl, "F_SETPIPE_SZ"),
                                reason="pipe sizes are set with Linux's F_SETPIPE_SZ")

# Writes 300 KB of log lines at once, more than a default 64 KiB pipe holds, on a non-blocking
# stdout, and reports (last line) whether any write found the pipe full.
BURST = r"""
import fcntl, os
fl = fcntl.fcntl(1, fcntl.F_GETFL)
fcntl.fcntl(1, fcntl.F_SETFL, fl | os.O_NONBLOCK)
full = 0
for i in range(3000):
    line = b"%04d I slot update_slots: " % i + b"x" * 80 + b"\n"
    while line:
        try:
            line = line[os.write(1, line):]
        except BlockingIOError:
            full += 1
            fcntl.fcntl(1, fcntl.F_SETFL, fl)  # block from here on: the test reads all
fcntl.fcntl(1, fcntl.F_SETFL, fl)
os.write(1, b"full=%d\n" % full)
"""


@linux_only
def test_the_log_pipe_is_grown() -> None:
    r, w, batch = log_pipe()
    try:
        with open("/proc/sys/fs/pipe-max-size") as f:
            want = min(PIPE_BYTES, int(f.read()))
        assert fcntl.fcntl(w, fcntl.F_GETPIPE_SZ) >= want
        assert batch is (want >= MIN_BATCH_PIPE)
        assert grow_pipe(r) >= want  # either end names the same pipe
    finally:
        os.close(r)
        os.close(w)


@linux_only
async def test_a_burst_of_lines_never_finds_the_pipe_full_and_every_line_arrives() -> None:
    """Read in batches (a 50 ms pause after each small read), as the runner's log is."""
    loop = asyncio.get_running_loop()
    r, w, batch = log_pipe()
    if not batch:
        os.close(r)
        os.close(w)
        pytest.skip("fs.pipe-max-size or the pipe quota keeps pipes small here: no batching")
    try:
        transport, pipe = await loop.subprocess_exec(
            lambda: LogPipe(can_batch=True), sys.executable, "-c", BURST,
            stdin=subprocess.DEVNULL, stdout=w, stderr=subprocess.STDOUT)
    finally:
        os.close(w)
    pipe.batch()
    await pipe.read_from(r)
    got: list[bytes] = []
    pipe.attach(got.extend)
    await asyncio.wait_for(asyncio.shield(pipe.exited), 30)
    await asyncio.wait_for(asyncio.shield(pipe.closed), 30)
    pipe.close()
    transport.close()
    assert got[-1] == b"full=0"  # the child's log thread would have blocked otherwise
    assert [int(x[:4]) for x in got[:-1]] == list(range(3000))


class _FakeReader:
    def __init__(self) -> None:
        self.paused = 0

    def pause_reading(self) -> None:
        self.paused += 1

    def resume_reading(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False


@pytest.mark.parametrize("can_batch", [True, False])
async def test_it_pauses_between_small_reads_only_once_batching_and_when_it_can(
        can_batch: bool) -> None:
    """A loading runner's log is read at once (its "listening" line ends the health poll's
    wait); from `batch()` on, small reads are followed by a pause, if the pipe is big."""
    pipe = LogPipe(can_batch)
    reader = _FakeReader()
    pipe._reader = reader  # type: ignore[assignment]
    got: list[bytes] = []
    pipe.attach(got.extend)
    pipe.received(b"0.00.000.900 I loading\n")
    assert reader.paused == 0  # not batching yet: a load
    pipe.batch()
    pipe.received(b"0.00.001.000 I a\n0.00.001.001 I b")
    pipe.received(b"\n")
    assert got == [b"0.00.000.900 I loading", b"0.00.001.000 I a", b"0.00.001.001 I b"]
    assert reader.paused == (1 if can_batch else 0)  # one pause per batch window
    pipe.ended()
    assert pipe.closed.done()
