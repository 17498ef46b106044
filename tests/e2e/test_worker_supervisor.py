"""`ollamapy worker` as a real process, around a fake rpc-server (tests/fake_rpc_server.py):
health via HELLO, restart with backoff after a crash, the child reaped when the supervisor is
SIGKILLed (parent-death signal), log lines with the worker prefix."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ollamapy.placement.rpc import WorkerSpec, query_worker
from tests.conftest import free_port
from tests.procs import alive

pytestmark = pytest.mark.e2e
FAKE = Path(__file__).resolve().parents[1] / "fake_rpc_server.py"


def fake_runner_dir(tmp_path: Path) -> Path:
    """A runner directory whose ggml-rpc-server is the fake (ollamapy runners finds it)."""
    d = tmp_path / "runners" / "cpu"
    (d / "bin").mkdir(parents=True)
    (d / "manifest.json").write_text('{"variant": "cpu"}')
    for name in ("llama-server", "ggml-rpc-server"):
        exe = d / "bin" / name
        exe.write_text(f"#!/bin/sh\nexec {sys.executable} {FAKE} \"$@\"\n")
        exe.chmod(0o755)
    return d.parent


def start(tmp_path: Path, port: int) -> tuple[subprocess.Popen[bytes], Path]:
    log = tmp_path / f"worker-{port}.log"
    e = dict(os.environ, OLLAMAPY_RUNNERS=str(fake_runner_dir(tmp_path / str(port))),
             PYTHONUNBUFFERED="1")
    with log.open("wb") as f:
        p = subprocess.Popen([sys.executable, "-m", "ollamapy.cli.main", "worker", "--port",
                              str(port), "--cache", str(tmp_path / "cache")],
                             env=e, stdout=f, stderr=subprocess.STDOUT)
    return p, log


def up(port: int, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if asyncio.run(query_worker(WorkerSpec("127.0.0.1", port), deadline_s=1.0)).up:
            return True
        time.sleep(0.1)
    return False


def ready(log: Path, n: int = 1, timeout: float = 20.0) -> None:
    """The supervisor's own probe succeeded n times (its `worker ready` line)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.read_text().count("worker ready on 127.0.0.1") >= n:
            return
        time.sleep(0.1)
    raise AssertionError(log.read_text())


def child_of(pid: int) -> int | None:
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    return int(kids[0]) if kids else None


def test_worker_serves_restarts_and_dies_with_parent(tmp_path: Path) -> None:
    port = free_port()
    p, log = start(tmp_path, port)
    second = None
    try:
        assert up(port), log.read_text()
        ready(log)
        first = child_of(p.pid)
        assert first is not None
        os.kill(first, signal.SIGKILL)  # the rpc-server crashes
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and child_of(p.pid) in (None, first):
            time.sleep(0.1)
        assert up(port), log.read_text()
        ready(log, 2)
        second = child_of(p.pid)
        assert second not in (None, first)
        text = log.read_text()
        assert "exited with status -9; restarting in 1s" in text
        assert f"worker[127.0.0.1:{port}:{first}] Starting RPC server v7.0.0" in text
        assert "--cache" in text and "LLAMA_CACHE=" in text
    finally:
        p.send_signal(signal.SIGKILL)  # no cleanup code runs: PDEATHSIG must take the child
        p.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and second is not None and alive(second):
        time.sleep(0.05)
    assert second is None or not alive(second)


def test_worker_sigterm_stops_child(tmp_path: Path) -> None:
    port = free_port()
    p, log = start(tmp_path, port)
    assert up(port), log.read_text()
    child = child_of(p.pid)
    p.send_signal(signal.SIGTERM)
    assert p.wait(15) == 0
    assert child is not None and not alive(child)


def test_worker_port_taken_fails_fast(tmp_path: Path) -> None:
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        p, log = start(tmp_path, port)
        assert p.wait(30) == 1
    assert f"cannot listen on 127.0.0.1:{port}" in log.read_text()
