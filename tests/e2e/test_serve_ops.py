"""`ollamapy serve` as systemd sees it: notify datagrams, `serve --help`, the access log."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from ollamapy.config import SETTINGS
from ollamapy.runner.process import free_port
from tests.conftest import start_server, stop_server

pytestmark = pytest.mark.timeout(120)


def _recv_all(s: socket.socket, until: str, deadline: float) -> list[str]:
    out: list[str] = []
    while time.monotonic() < deadline:
        try:
            out.append(s.recv(4096).decode())
        except TimeoutError:
            continue
        if until in out[-1]:
            return out
    raise AssertionError(f"no {until!r} in {out}")


def test_ready_watchdog_stopping(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(path))
    listener.settimeout(0.5)
    port = free_port()
    env = dict(os.environ, OLLAMA_HOST=f"127.0.0.1:{port}", HOME=str(tmp_path),
               OLLAMA_MODELS=str(tmp_path / "models"), NOTIFY_SOCKET=str(path),
               WATCHDOG_USEC="200000")
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "ollamapy.cli.main", "serve"], env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        got = _recv_all(listener, "READY=1", time.monotonic() + 30)
        ready = got[-1].split("\n")
        assert ready == ["READY=1", "STATUS=ready, no models loaded"]
        # READY means bound: the very next connect is served.
        assert httpx.get(f"http://127.0.0.1:{port}/").status_code == 200
        pings = [m for m in _recv_all(listener, "WATCHDOG=1", time.monotonic() + 10)]
        assert pings[-1] == "WATCHDOG=1"
        assert _recv_all(listener, "WATCHDOG=1", time.monotonic() + 10)[-1] == "WATCHDOG=1"
        proc.send_signal(signal.SIGTERM)
        stopping = _recv_all(listener, "STOPPING=1", time.monotonic() + 15)
        assert stopping[-1].split("\n")[0] == "STOPPING=1"
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        listener.close()
        log.close()


def test_serve_help_lists_every_setting() -> None:
    out = subprocess.run([sys.executable, "-m", "ollamapy.cli.main", "serve", "--help"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "Environment Variables:" in out.stdout
    for s in SETTINGS:
        line = next((ln for ln in out.stdout.splitlines() if ln.strip().startswith(s.env + " ")),
                    None)
        assert line is not None, f"{s.env} missing from serve --help"
        assert s.description in " ".join(out.stdout.split()), s.env
    assert "(default: 127.0.0.1:11434)" in out.stdout


def test_access_log_one_line_per_request_without_bodies_or_keys(tmp_path: Path) -> None:
    s = start_server(tmp_path, {"OLLAMA_API_KEYS": "sekrit-key-1"})
    try:
        auth = {"Authorization": "Bearer sekrit-key-1"}
        httpx.get(s.url + "/api/tags", headers=auth)
        httpx.post(s.url + "/api/show", json={"model": "private-prompt-text"}, headers=auth)
        httpx.get(s.url + "/api/tags?token=query-secret", headers={"Authorization": "Bearer bad"})
    finally:
        assert stop_server(s) == 0
    lines = [ln for ln in s.log().splitlines() if "source=ollamapy.access" in ln]
    tags = [ln for ln in lines if "path=/api/tags" in ln]
    assert any("method=GET" in ln and "status=200" in ln and "duration=" in ln for ln in tags)
    assert any("status=401" in ln for ln in tags)
    assert any("path=/api/show" in ln and "status=404" in ln for ln in lines)
    text = s.log()
    assert "sekrit-key-1" not in text and "private-prompt-text" not in text
    assert "query-secret" not in text


def test_sighup_without_tls_keeps_serving(server) -> None:
    server.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 15
    while "nothing to reload" not in server.log():
        assert server.proc.poll() is None, server.log()
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.05)
    assert httpx.get(server.url + "/").status_code == 200
    assert stop_server(server) == 0
