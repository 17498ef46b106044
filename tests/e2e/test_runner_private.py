"""A runner is private to the server that started it: a local process without its key is
refused, /health stays open for the readiness poll, and neither its environment nor its command
line carries the server's secrets."""

from __future__ import annotations

import os
from pathlib import Path

import aiohttp
import pytest

from ollamapy.runner.flags import LaunchConfig, build_args
from ollamapy.runner.process import RunnerProcess, child_env, free_port

pytestmark = pytest.mark.e2e

SERVER_SECRET = "admin-key-must-not-leak"


def proc_file(pid: int, name: str) -> bytes:
    return Path(f"/proc/{pid}/{name}").read_bytes()


async def test_runner_refuses_clients_without_its_key(runner_binary: Path, model_path: Path,
                                                      tmp_path: Path) -> None:
    parent = {**os.environ, "OLLAMA_API_KEYS": SERVER_SECRET,
              "OLLAMAPY_INFERENCE_KEYS": SERVER_SECRET, "LLAMA_ARG_ENDPOINT_SLOTS": "1"}
    args = build_args(LaunchConfig(model_path=model_path, num_ctx=512, n_gpu_layers=0,
                                   gpu_backend=False, num_thread=1))
    proc = await RunnerProcess.start(runner_binary, args, port=free_port(),
                                     env=child_env(parent, tmp_path), name="private")
    try:
        async with aiohttp.ClientSession() as s:
            await proc.wait_ready(s, stall_timeout=60)  # /health answers without a key
            auth = {"Authorization": f"Bearer {proc.api_key}"}
            body = {"prompt": "Hi", "n_predict": 1}
            for method, path in (("POST", "/completion"), ("GET", "/props"),
                                 ("POST", "/tokenize"), ("GET", "/v1/models")):
                async with s.request(method, proc.base_url + path, json=body) as r:
                    assert r.status == 401, (path, await r.text())
                async with s.request(method, proc.base_url + path, json=body,
                                     headers={"Authorization": "Bearer wrong"}) as r:
                    assert r.status == 401, path
            async with s.get(proc.base_url + "/props", headers=auth) as r:
                assert r.status == 200
            async with s.post(proc.base_url + "/completion", json=body, headers=auth) as r:
                assert r.status == 200
            # --no-slots: even with the key, nobody reads other requests' prompts
            async with s.get(proc.base_url + "/slots", headers=auth) as r:
                assert r.status != 200
            async with s.get(proc.base_url + "/health",
                             headers={"Origin": "https://evil.example"}) as r:
                assert r.status == 200
                assert r.headers.get("Access-Control-Allow-Origin") in (
                    None, "http://ollamapy.invalid")  # no page may read it
        environ = proc_file(proc.pid, "environ").split(b"\0")
        names = {e.split(b"=", 1)[0] for e in environ if e}
        assert b"OLLAMA_API_KEYS" not in names and b"OLLAMAPY_INFERENCE_KEYS" not in names
        assert SERVER_SECRET.encode() not in b"\0".join(environ)
        assert f"LLAMA_API_KEY={proc.api_key}".encode() in environ
        cmdline = proc_file(proc.pid, "cmdline")
        assert proc.api_key.encode() not in cmdline and b"--api-key" not in cmdline
    finally:
        await proc.stop()
