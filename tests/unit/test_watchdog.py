"""The loop watchdog itself: blocking async tests fail, opted-out ones pass, sync ones ignored."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.watchdog import is_blocking

REPO = Path(__file__).resolve().parents[2]


def test_verdict_rule() -> None:
    assert is_blocking(0.15, 0.12)          # CPU-bound work on the loop
    assert is_blocking(0.6, 0.0)            # a blocking wait (lock, sleep, sync read)
    assert not is_blocking(0.15, 0.01)      # descheduled on a busy box: not our fault
    assert not is_blocking(0.05, 0.05)
    assert not is_blocking(0.14, 0.07)      # half busy, half descheduled


def _run(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    f = tmp_path / "test_sample.py"
    f.write_text(textwrap.dedent(body))
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "tests.watchdog",
                           "-p", "no:cacheprovider", "--rootdir", str(tmp_path), str(f)],
                          cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "COLUMNS": "400"})


def test_blocking_async_test_fails_and_opt_out_passes(tmp_path: Path) -> None:
    r = _run(tmp_path, """
        import asyncio, time
        import pytest
        pytestmark = pytest.mark.asyncio

        async def test_blocks():
            await asyncio.sleep(0)
            time.sleep(0.6)

        async def test_spins():
            t = time.thread_time()  # 300 ms of CPU, however busy the machine is
            while time.thread_time() - t < 0.3:
                pass

        async def test_fine():
            for _ in range(5):
                await asyncio.sleep(0.05)

        @pytest.mark.allow_blocking(reason="demonstrates the opt-out")
        async def test_opted_out():
            time.sleep(0.6)

        @pytest.mark.allow_blocking
        def test_marker_without_reason():
            pass

        def test_sync_is_ignored():
            time.sleep(0.6)
    """)
    out = r.stdout + r.stderr
    summary = out.split("short test summary")[-1]
    assert "FAILED" in summary and "test_blocks - Failed: event loop blocked by 1 callback(s) " \
        "over 100 ms" in summary, out
    assert "test_spins - Failed: event loop blocked" in summary, out
    assert "test_marker_without_reason - Failed: @pytest.mark.allow_blocking needs a reason" \
        in summary, out
    assert "3 passed" in summary and "2 failed" in summary, out
    for name in ("test_fine", "test_opted_out", "test_sync_is_ignored"):
        assert name not in summary, out
