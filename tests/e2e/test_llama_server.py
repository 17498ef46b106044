"""The built runner itself: start llama-server on SmolLM2, wait for /health, stream tokens."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import aiohttp
import pytest

from ollamapy import pins
from ollamapy.runner.process import RunnerProcess, child_env, free_port

pytestmark = pytest.mark.e2e


async def test_runner_streams_tokens(runner_binary: Path, model_path: Path,
                                     tmp_path: Path) -> None:
    env = child_env(os.environ, tmp_path)
    proc = await RunnerProcess.start(
        runner_binary, ["--model", str(model_path), "-c", "2048", "-np", "1", "--no-ui",
                        "--offline", "-t", "1"],
        port=free_port(), env=env, name="test")
    try:
        async with aiohttp.ClientSession() as s:
            await proc.wait_ready(s, stall_timeout=60)
            body = {"prompt": "The capital of France is", "n_predict": 8, "stream": True,
                    "temperature": 0, "cache_prompt": False}
            events = []
            async with s.post(f"{proc.base_url}/completion", json=body,
                              headers={"Authorization": f"Bearer {proc.api_key}"}) as r:
                assert r.status == 200
                assert r.headers["Content-Type"].startswith("text/event-stream")
                async for raw in r.content:
                    line = raw.decode().strip()
                    if line.startswith("data: "):
                        events.append(json.loads(line[6:]))
            assert len(events) >= 2, events
            text = "".join(e.get("content", "") for e in events)
            assert text.strip(), events
            assert events[-1]["stop"] is True
            assert events[-1]["tokens_predicted"] >= 1
    finally:
        await proc.stop()
    assert proc.returncode is not None


async def test_bad_model_reports_load_error(runner_binary: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    proc = await RunnerProcess.start(runner_binary, ["--model", str(bad), "--no-ui"],
                                     port=free_port(), env=child_env(os.environ, tmp_path),
                                     name="bad")
    try:
        async with aiohttp.ClientSession() as s:
            with pytest.raises(Exception) as e:
                await proc.wait_ready(s, stall_timeout=30)
        assert "llama runner process has terminated: exit status 1" in str(e.value)
        assert "model" in str(e.value).lower()
    finally:
        await proc.stop()


def test_runner_is_relocatable(runner_binary: Path, tmp_path: Path) -> None:
    """The runner dir is self-contained: a copy elsewhere still starts (RUNPATH is $ORIGIN)."""
    import shutil

    dest = tmp_path / "moved"
    shutil.copytree(runner_binary.parent.parent, dest, symlinks=True)
    out = subprocess.run([str(dest / "bin" / "llama-server"), "--version"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert pins.llama_cpp().short_commit in out.stdout + out.stderr
