"""sd_notify: datagrams reach a socket the test listens on (path and abstract namespace)."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import pytest

from ollamapy.server import notify

pytestmark = pytest.mark.timeout(30)


def test_socket_address_forms() -> None:
    assert notify.socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert notify.socket_address("@abc") == b"\0abc"
    assert notify.socket_address("") is None
    assert notify.socket_address(None) is None
    assert notify.socket_address("vsock:2:1234") is None


def test_watchdog_interval() -> None:
    assert notify.watchdog_interval({}) is None
    assert notify.watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert notify.watchdog_interval({"WATCHDOG_USEC": "junk"}) is None
    assert notify.watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert notify.watchdog_interval({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"},
                                    pid=2) is None
    assert notify.watchdog_interval({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "7"},
                                    pid=7) == 1.0


def test_status_line_is_bounded() -> None:
    assert notify.status_line([]) == "STATUS=ready, no models loaded"
    assert notify.status_line(["a:1", "b:2"]) == "STATUS=ready, 2 loaded: a:1, b:2"
    assert len(notify.status_line([f"m{i}" * 50 for i in range(100)])) == 512


def test_no_socket_is_a_no_op() -> None:
    n = notify.Notifier({})
    assert not n.enabled
    assert n.send("READY=1") is False


def _listen(addr: str | bytes) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(addr)
    s.settimeout(5)
    return s


@pytest.mark.parametrize("abstract", [False, True])
def test_ready_status_stopping_reach_the_socket(tmp_path: Path, abstract: bool) -> None:
    name = f"ollamapy-test-{os.getpid()}-{tmp_path.name}"
    env_value = f"@{name}" if abstract else str(tmp_path / "notify.sock")
    listener = _listen(b"\0" + name.encode() if abstract else env_value)
    try:
        n = notify.Notifier({"NOTIFY_SOCKET": env_value})
        n.ready(["smollm2:135m"])
        assert listener.recv(4096).decode().split("\n") == [
            "READY=1", "STATUS=ready, 1 loaded: smollm2:135m"]
        n.status(["smollm2:135m"])  # unchanged: nothing sent
        n.status([])
        assert listener.recv(4096) == b"STATUS=ready, no models loaded"
        n.stopping()
        assert listener.recv(4096).decode().split("\n") == ["STOPPING=1",
                                                            "STATUS=shutting down"]
    finally:
        listener.close()


async def test_watchdog_pings_from_the_loop(tmp_path: Path) -> None:
    path = tmp_path / "wd.sock"
    listener = _listen(str(path))
    listener.setblocking(False)
    n = notify.Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "20000"})
    assert n.watchdog_s == 0.01
    n.start(lambda: [])
    loop = asyncio.get_running_loop()
    try:
        got = [await asyncio.wait_for(loop.sock_recv(listener, 4096), 5) for _ in range(3)]
    finally:
        await n.close()
        listener.close()
    assert got == [b"WATCHDOG=1"] * 3


def test_gone_socket_is_not_fatal(tmp_path: Path) -> None:
    n = notify.Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    assert n.send("READY=1") is False
