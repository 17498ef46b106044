"""`create --quantize` as a child process: progress from its per-tensor lines, the output
committed atomically as a blob, failures and cancellation leave no file and no process. The
real llama-quantize is used where it is built; a scripted stand-in covers failure and a run
cancelled mid-way (deterministic, no timing)."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from ollamapy.errors import BadRequest, OllamaError
from ollamapy.gguf import read_gguf
from ollamapy.store import quantize
from ollamapy.store import store as st
from ollamapy.store.register import import_blob
from tests.conftest import need
from tests.procs import gone_within
from tests.unit.test_gguf import write_fixture

REAL = Path(__file__).resolve().parents[2] / "runners" / "cpu" / "bin" / "llama-quantize"


@pytest.fixture
def store(tmp_path: Path) -> st.ModelStore:
    return st.ModelStore(tmp_path / "models")


def f16_blob(store: st.ModelStore, tmp_path: Path) -> str:
    return import_blob(store, write_fixture(tmp_path / "f16.gguf"))  # general.file_type F16


def leftovers(store: st.ModelStore) -> list[str]:
    return sorted(p.name for p in store.blobs_dir.iterdir() if "tmp" in p.name)


def fake_tool(tmp_path: Path, body: str) -> Path:
    tool = tmp_path / "llama-quantize"
    tool.write_text("#!/bin/sh\n" + body)
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    return tool


def test_parse_type_like_ollama() -> None:
    assert quantize.parse_type("q4_k_m") == "Q4_K_M"
    assert quantize.parse_type("Q4_K") == "Q4_K_M"
    assert quantize.parse_type("q8_0") == "Q8_0"
    with pytest.raises(BadRequest) as e:
        quantize.parse_type("q3_k")
    assert e.value.message == ("unsupported quantization type Q3_K - supported types are "
                               "F32, F16, Q4_K_S, Q4_K_M, Q8_0")


def test_progress_lines() -> None:
    line = b"[  12/ 272]   blk.1.attn_q.weight - [576, 576, 1, 1], type = f16, converting"
    assert quantize.progress_of(line) == (12, 272)
    assert quantize.progress_of(b"llama_model_loader: - kv 0") is None


async def test_real_quantize(store: st.ModelStore, tmp_path: Path) -> None:
    if not os.access(REAL, os.X_OK):
        need("llama-quantize", "make runner-test")
    src = f16_blob(store, tmp_path)
    events: list[dict[str, Any]] = []
    out = await quantize.quantize_blob(store, src, "Q8_0", events.append, tool=REAL, threads=1)
    assert out != src and store.has_blob(out)
    assert read_gguf(store.blob_path(out)).file_type == "Q8_0"
    steps = [e for e in events if e["status"] == "quantizing F16 model to Q8_0"]
    assert steps[0]["completed"] == 0 and steps[-1]["completed"] == steps[-1]["total"]
    assert all(e["digest"] == "0000000000000000000" for e in steps)
    assert events[-1] == {"status": "verifying conversion"}
    assert leftovers(store) == []
    # already that type: nothing to do (a quantized source is refused, as in Ollama)
    assert await quantize.quantize_blob(store, src, "F16", events.append) == src
    with pytest.raises(BadRequest, match="only supported for F16, BF16 and F32 models"):
        await quantize.quantize_blob(store, out, "Q8_0", events.append)


async def test_failure_leaves_nothing(store: st.ModelStore, tmp_path: Path) -> None:
    tool = fake_tool(tmp_path, 'echo "[   1/   2] a"\necho "error: out of cheese"\nexit 3\n')
    src = f16_blob(store, tmp_path)
    before = sorted(p.name for p in store.blobs_dir.iterdir())
    with pytest.raises(OllamaError, match=r"llama-quantize failed \(3\): error: out of cheese"):
        await quantize.quantize_blob(store, src, "Q8_0", lambda _e: None, tool=tool)
    assert sorted(p.name for p in store.blobs_dir.iterdir()) == before


async def test_cancel_kills_and_reaps(store: st.ModelStore, tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    tool = fake_tool(tmp_path, f'echo $$ > {pidfile}\necho "[   1/   9] a"\n'
                               'exec sleep 600\n')
    src = f16_blob(store, tmp_path)
    started = asyncio.Event()

    def progress(e: dict[str, Any]) -> None:
        if e.get("completed"):
            started.set()

    task = asyncio.create_task(quantize.quantize_blob(store, src, "Q8_0", progress,
                                                      tool=tool))
    await asyncio.wait_for(started.wait(), 60)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    pid = int(pidfile.read_text())
    with pytest.raises(ProcessLookupError):  # killed and reaped: no such process any more
        os.kill(pid, 0)
    assert leftovers(store) == []


SERVER = """
import asyncio, sys
from pathlib import Path
from ollamapy.store import quantize
from ollamapy.store import store as st

store, src, tool = st.ModelStore(Path(sys.argv[1])), sys.argv[2], Path(sys.argv[3])
asyncio.run(quantize.quantize_blob(store, src, "Q8_0", print, tool=tool))
"""


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"),
                    reason="PR_SET_PDEATHSIG is Linux")
def test_a_killed_server_takes_the_quantizer_with_it(store: st.ModelStore,
                                                     tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    pidfile = tmp_path / "pid"
    tool = fake_tool(tmp_path, f'echo $$ > {pidfile}.new\nmv {pidfile}.new {pidfile}\n'
                               'exec sleep 600\n')
    src = f16_blob(store, tmp_path)
    repo = Path(__file__).resolve().parents[2]
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(store.root), src, str(tool)],
                              env={**os.environ, "PYTHONPATH": str(repo)})
    try:
        deadline = time.monotonic() + 60
        while not pidfile.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        pid = int(pidfile.read_text())
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=10)
        gone = gone_within(pid, 15)
        if not gone:
            os.kill(pid, signal.SIGKILL)
        assert gone, "llama-quantize outlived the server"
    finally:
        server.kill()
        server.wait()
