"""RunnerProcess life-cycle against tiny fake runners (shell scripts): stall rule, exit errors,
SIGTERM-then-SIGKILL, bind-failure retries. Real processes, so they live with the e2e tests."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from ollamapy.errors import RunnerError
from ollamapy.runner.process import RunnerProcess, child_env, free_port, launch

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def script(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "fake-llama-server"
    p.write_text("#!/bin/sh\n" + body)
    p.chmod(0o755)
    return p


async def start(binary: Path, tmp_path: Path) -> RunnerProcess:
    return await RunnerProcess.start(binary, [], port=free_port(), env=child_env(
        os.environ, tmp_path), name="fake")


LISTENS_LATE = """
import http.server, sys, time
port = int(sys.argv[sys.argv.index("--port") + 1])
time.sleep(0.5)  # loading: the health poll's first look finds nothing

class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass

srv = http.server.HTTPServer(("127.0.0.1", port), H)
print("0.00.500.000 I srv  llama_server: listening on http://127.0.0.1:%d" % port, flush=True)
srv.serve_forever()
"""


async def test_the_listening_line_ends_the_health_polls_wait(tmp_path: Path):
    """The poll looks again as soon as the runner's log says it listens, not a poll interval
    later (the interval here is 10 s: waiting it out would fail the test)."""
    exe = tmp_path / "fake-llama-server"
    exe.write_text(f"#!{sys.executable}\n{LISTENS_LATE}")
    exe.chmod(0o755)
    proc = await start(exe, tmp_path)
    try:
        t0 = time.monotonic()
        async with aiohttp.ClientSession() as s:
            await asyncio.wait_for(proc.wait_ready(s, stall_timeout=30, poll=10.0), 8)
        assert time.monotonic() - t0 < 8
    finally:
        await proc.stop()


async def test_exit_during_load_reports_status_and_last_error(tmp_path: Path):
    exe = script(tmp_path, "echo 'llama_model_load: error loading model: bad magic' >&2\n"
                           "echo 'srv main: exiting due to model loading error' >&2\nexit 1\n")
    proc = await start(exe, tmp_path)
    async with aiohttp.ClientSession() as s:
        with pytest.raises(RunnerError) as e:
            await proc.wait_ready(s, stall_timeout=10)
    assert e.value.message.startswith("llama runner process has terminated: exit status 1: ")
    # the line naming the cause wins over the generic closing line (Ollama's StatusWriter)
    assert e.value.message.endswith(": error loading model: bad magic")
    await proc.stop()


async def test_stall_without_progress_times_out_and_kills(tmp_path: Path):
    exe = script(tmp_path, "echo loading\nexec sleep 30\n")
    proc = await start(exe, tmp_path)
    t0 = time.monotonic()
    async with aiohttp.ClientSession() as s:
        with pytest.raises(RunnerError, match="timed out waiting for llama runner to start") as e:
            await proc.wait_ready(s, stall_timeout=0.5)
    assert e.value.message.endswith("after 0.5s without progress - loading")  # its last line
    assert time.monotonic() - t0 < 5
    assert proc.returncode is not None  # killed and reaped


async def test_progress_keeps_a_slow_load_alive(tmp_path: Path):
    # 1.2 s of load with a line every 0.2 s survives a 0.6 s stall limit, then exits.
    exe = script(tmp_path, "for i in 1 2 3 4 5 6; do echo progress $i; sleep 0.2; done\n"
                           "echo 'fatal: gave up' >&2\nexit 3\n")
    proc = await start(exe, tmp_path)
    async with aiohttp.ClientSession() as s:
        with pytest.raises(RunnerError) as e:
            await proc.wait_ready(s, stall_timeout=0.6)
    assert "exit status 3" in e.value.message  # not a stall timeout


async def test_stop_escalates_to_sigkill(tmp_path: Path):
    exe = script(tmp_path, "trap '' TERM\necho started\nwhile true; do sleep 0.1; done\n")
    proc = await start(exe, tmp_path)
    await asyncio.sleep(0.3)
    t0 = time.monotonic()
    await proc.stop(grace=0.5)
    assert 0.4 < time.monotonic() - t0 < 5
    assert proc.returncode == -9


async def test_bind_failure_retries_then_gives_up(tmp_path: Path):
    exe = script(tmp_path, "echo \"couldn't bind HTTP server socket, hostname: 127.0.0.1\" >&2\n"
                           "exit 1\n")
    tried: list[int] = []

    def port() -> int:
        tried.append(free_port())
        return tried[-1]

    async with aiohttp.ClientSession() as s:
        with pytest.raises(RunnerError, match="couldn't bind"):
            await launch(exe, [], env=child_env(os.environ, tmp_path), name="fake", session=s,
                         stall_timeout=10, port_factory=port, attempts=3)
    assert len(tried) == 3


PID1_PROBE = """
import asyncio, os, sys
from pathlib import Path
from ollamapy.runner.process import RunnerProcess, child_env
assert os.getpid() == 1, os.getpid()
async def main():
    exe, home = Path(sys.argv[1]), Path(sys.argv[2])
    proc = await RunnerProcess.start(exe, [], port=1, env=child_env(os.environ, home), name="p")
    rc = await proc.wait()
    await proc.stop()
    print("rc", rc, "tail", "|".join(proc.tail))
asyncio.run(main())
"""


def test_runner_starts_when_the_server_is_pid_1(tmp_path: Path):
    """A container entrypoint server is pid 1: its runners must not take that for 'orphaned'."""
    import shutil
    import subprocess
    import sys

    unshare = shutil.which("unshare")
    if unshare is None or subprocess.run([unshare, "-rpf", "true"],
                                         capture_output=True).returncode != 0:
        pytest.skip("needs unprivileged PID namespaces (unshare -rpf) to run as pid 1")
    exe = script(tmp_path, "echo runner-alive\n")
    out = subprocess.run([unshare, "-rpf", sys.executable, "-c", PID1_PROBE, str(exe),
                          str(tmp_path)], capture_output=True, text=True, timeout=30,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr
    assert "rc 0 tail runner-alive" in out.stdout


async def test_cancelled_load_kills_and_reaps_the_child(tmp_path: Path):
    """Server shutdown (or the last waiter leaving) during a load: the child dies at once."""
    import psutil

    pid_file = tmp_path / "pid"
    exe = script(tmp_path, f"echo $$ > {pid_file}\necho loading\nexec sleep 60\n")
    async with aiohttp.ClientSession() as s:
        task = asyncio.create_task(launch(exe, [], env=child_env(os.environ, tmp_path),
                                          name="fake", session=s, stall_timeout=30))
        for _ in range(200):
            if pid_file.exists() and pid_file.read_text().strip():
                break
            await asyncio.sleep(0.02)
        pid = int(pid_file.read_text())
        t0 = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert time.monotonic() - t0 < 3
    assert not psutil.pid_exists(pid), "the runner outlived its cancelled load (or a zombie)"


async def test_a_start_cancelled_while_its_log_pipe_connects_reaps_the_child(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The child runs before its log pipe is read: a cancel in between (shutdown, the waiter
    left) kills it and waits until it is reaped, not leaving it, or a zombie, behind."""
    import psutil

    from ollamapy.runner import logpipe

    pid_file = tmp_path / "pid"
    exe = script(tmp_path, f"echo $$ > {pid_file}\nexec sleep 60\n")
    reading = asyncio.Event()

    async def stuck(self: logpipe.LogPipe, fd: int) -> None:
        os.close(fd)
        reading.set()
        await asyncio.Event().wait()

    monkeypatch.setattr(logpipe.LogPipe, "read_from", stuck)
    task = asyncio.create_task(RunnerProcess.start(exe, [], port=free_port(),
                                                   env=child_env(os.environ, tmp_path),
                                                   name="fake"))
    await asyncio.wait_for(reading.wait(), 10)
    for _ in range(200):
        if pid_file.exists() and pid_file.read_text().strip():
            break
        await asyncio.sleep(0.02)
    pid = int(pid_file.read_text())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not psutil.pid_exists(pid), "the child outlived its cancelled start (or a zombie)"


CANCEL_STARTS = """
import asyncio, os, sys
from pathlib import Path
import psutil
from ollamapy.runner.process import RunnerProcess, child_env, free_port

exe, tmp = Path(sys.argv[1]), Path(sys.argv[2])

async def main():
    def start():
        return RunnerProcess.start(exe, [], port=free_port(), env=child_env(os.environ, tmp),
                                   name="x")

    await (await start()).stop(grace=1)  # the loop's own child watcher is open from here on
    fds = len(os.listdir("/proc/self/fd"))
    for i in range(36):  # cancelled at every step of a start, one loop turn later each time
        t = asyncio.create_task(start())
        for _ in range(i % 6):
            await asyncio.sleep(0)
        t.cancel()
        try:
            await (await t).stop(grace=1)
        except asyncio.CancelledError:
            pass
    await asyncio.sleep(0.3)
    print("fds", len(os.listdir("/proc/self/fd")) - fds,
          "children", len(psutil.Process().children(recursive=True)))

if sys.argv[3] == "uvloop":
    import uvloop
    uvloop.run(main())
else:
    asyncio.run(main())
"""


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_starts_cancelled_at_any_step_leave_no_fd_and_no_child(tmp_path: Path, loop: str):
    """uvloop closes a read pipe's fd itself when its connect is cancelled: closing the file
    object too was EBADF, or closed whatever had taken that number meanwhile. No fd is left
    open and no child is left running, on either loop."""
    if loop == "uvloop":
        pytest.importorskip("uvloop", reason="uvloop is what `ollamapy serve` runs on")
    exe = script(tmp_path, "echo 'srv llama_server: listening on x'\nexec sleep 30\n")
    out = subprocess.run([sys.executable, "-c", CANCEL_STARTS, str(exe), str(tmp_path), loop],
                         capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["fds", "0", "children", "0"]


async def test_a_cancelled_waiter_does_not_stop_stop_from_killing(tmp_path: Path):
    """The scheduler cancels the task watching a runner's exit before it stops the runner at
    shutdown: that cancel must not make the runner look exited (it did once, and SIGTERM left
    llama-server running while the server waited for its stream)."""
    proc = await start(script(tmp_path, "echo up\nexec sleep 60\n"), tmp_path)
    watcher = asyncio.ensure_future(proc.wait())
    await asyncio.sleep(0.05)
    watcher.cancel()
    with pytest.raises(asyncio.CancelledError):
        await watcher
    assert proc.returncode is None
    await proc.stop(grace=2)
    assert proc.returncode is not None


async def test_log_lines_arrive_whole_in_batches(tmp_path: Path):
    """llama-server writes a line in pieces (timestamp, level, message); the log pipe hands
    over whole lines, in order, cuts an over-long one and keeps going."""
    long_line = "x" * (70 * 1024)
    exe = script(tmp_path, "printf '0.00.001.000 '; printf 'W '; printf 'first warning\\n'\n"
                           f"echo {long_line}\n"
                           "printf 'last line without newline'\n")
    proc = await start(exe, tmp_path)
    assert await asyncio.wait_for(proc.wait(), 10) == 0
    await proc.stop()
    lines = list(proc.tail)
    assert lines[0] == "0.00.001.000 W first warning"
    assert lines[1] == "x" * (64 * 1024)
    assert lines[2:] == ["last line without newline"]
    assert proc.lines_seen == 3
