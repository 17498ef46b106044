"""Is a process still running? One answer for every test that checks nothing outlives the
server (a zombie has exited: it only waits to be reaped, and kill(0) still finds it)."""

from __future__ import annotations

import time


def alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def gone_within(pid: int | None, seconds: float) -> bool:
    """Poll until `pid` is no longer running (True) or `seconds` have passed (False)."""
    deadline = time.monotonic() + seconds
    while alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True
