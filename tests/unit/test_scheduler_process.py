"""Runner-process helpers the scheduler relies on: log-parsed buffer sizes, log levels, env."""

from __future__ import annotations

import logging
from pathlib import Path

from ollamapy.runner.process import (
    buffer_sizes,
    child_env,
    is_bind_failure,
    parse_buffer_line,
    runner_line_level,
)

MiB = 1024 * 1024


def test_parse_buffer_lines_from_a_real_log():
    lines = [
        "0.00.198.995 I load_tensors:   CPU_Mapped model buffer size =    92.10 MiB",
        "0.00.200.795 I llama_context:        CPU  output buffer size =     0.19 MiB",
        "0.00.200.911 I llama_kv_cache:        CPU KV buffer size =    45.00 MiB",
        "0.00.232.670 I sched_reserve:        CPU compute buffer size =    15.51 MiB",
        "load_tensors:        CUDA0 model buffer size =  4403.49 MiB",
        "llama_kv_cache:      CUDA1 KV buffer size =   256.00 MiB",
        "sched_reserve:  CUDA_Host compute buffer size =    12.01 MiB",
        "0.00.100.000 I srv    load_model: initializing, n_slots = 1",
    ]
    parsed = [parse_buffer_line(x) for x in lines]
    assert parsed[0] == ("CPU_Mapped", "model", int(92.10 * MiB))
    assert parsed[1] == ("CPU", "output", int(0.19 * MiB))
    assert parsed[4] == ("CUDA0", "model", int(4403.49 * MiB))
    assert parsed[-1] is None
    buffers = {(d, k): n for d, k, n in filter(None, parsed)}
    total, vram = buffer_sizes(buffers)
    assert total == sum(buffers.values())
    assert vram == int(4403.49 * MiB) + int(256 * MiB)  # CPU*, *_Host stay in system RAM
    assert buffer_sizes({}) == (0, 0)


def test_runner_log_levels():
    assert runner_line_level("0.00.001.000 E srv  load_model: failed to load model") == (
        logging.WARNING)
    assert runner_line_level("0.00.001.000 W srv  llama_server: security: no API key") == (
        logging.INFO)
    assert runner_line_level("0.00.001.000 I srv  llama_server: model loaded") == logging.DEBUG
    assert runner_line_level("error: invalid argument: --mlock") == logging.WARNING
    assert runner_line_level("warning: no usable GPU found") == logging.INFO


def test_child_env_is_scrubbed(tmp_path: Path):
    env = child_env({"PATH": "/bin", "LLAMA_ARG_CTX_SIZE": "1", "LLAMA_API_KEY": "k",
                     "LLAMA_CACHE": "/c", "HOME": "/h", "HF_TOKEN": "t",
                     "LLAMA_SERVER_ROUTER_PORT": "1", "AIP_MODE": "1"}, tmp_path)
    assert env == {"PATH": "/bin", "HOME": "/h", "XDG_CONFIG_HOME": str(tmp_path)}


def test_child_env_is_an_allowlist(tmp_path: Path):
    """Only what llama.cpp and the GPU libraries read gets through: never the server's keys or
    any other secret, even under an allowed prefix."""
    parent = {"PATH": "/bin", "HOME": "/h", "TMPDIR": "/t", "LD_LIBRARY_PATH": "/l",
              "CUDA_VISIBLE_DEVICES": "0", "HIP_VISIBLE_DEVICES": "1", "ROCR_VISIBLE_DEVICES": "2",
              "HSA_OVERRIDE_GFX_VERSION": "10.3.0", "GGML_VK_VISIBLE_DEVICES": "0",
              "GGML_CUDA_ENABLE_UNIFIED_MEMORY": "1", "OMP_NUM_THREADS": "2",
              "VK_ICD_FILENAMES": "/icd.json",
              "OLLAMA_API_KEYS": "admin-secret", "OLLAMA_API_KEYS_FILE": "/etc/keys",
              "OLLAMAPY_INFERENCE_KEYS": "inf", "OLLAMA_API_KEY": "client",
              "AWS_SECRET_ACCESS_KEY": "aws", "GITHUB_TOKEN": "gh", "SSH_AUTH_SOCK": "/s",
              "DATABASE_URL": "postgres://u:p@h/db", "LLAMA_ARG_HOST": "0.0.0.0",
              "LLAMA_ARG_ENDPOINT_SLOTS": "1", "CUDA_API_KEY": "x", "GGML_TOKEN": "y",
              "LLAMA_LOG_COLORS": "1"}
    env = child_env(parent, tmp_path)
    assert env == {"PATH": "/bin", "HOME": "/h", "TMPDIR": "/t", "LD_LIBRARY_PATH": "/l",
                   "CUDA_VISIBLE_DEVICES": "0", "HIP_VISIBLE_DEVICES": "1",
                   "ROCR_VISIBLE_DEVICES": "2", "HSA_OVERRIDE_GFX_VERSION": "10.3.0",
                   "GGML_VK_VISIBLE_DEVICES": "0", "GGML_CUDA_ENABLE_UNIFIED_MEMORY": "1",
                   "OMP_NUM_THREADS": "2", "VK_ICD_FILENAMES": "/icd.json",
                   "XDG_CONFIG_HOME": str(tmp_path)}


def test_bind_failure_detection():
    assert is_bind_failure("0.00.0 E srv  init: couldn't bind HTTP server socket, hostname: "
                           "127.0.0.1, port: 8080")
    assert not is_bind_failure("error loading model")


async def test_runner_gets_a_random_key_in_its_environment_only(tmp_path: Path):
    """Each runner has its own key; it is in the child's environment, never in its argv."""
    import asyncio
    import stat

    from ollamapy.runner.process import RunnerProcess

    fake = tmp_path / "llama-server"
    fake.write_text('#!/bin/sh\nprintf "%s" "$LLAMA_API_KEY" > "$OUT.key"\n'
                    'printf "%s " "$@" > "$OUT.argv"\nexec sleep 30\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    keys = []
    for i in range(2):
        out = tmp_path / f"run{i}"
        env = {**child_env({"PATH": "/bin:/usr/bin", "OLLAMA_API_KEYS": "k"}, tmp_path),
               "OUT": str(out)}
        proc = await RunnerProcess.start(fake, ["--model", "m"], port=1, env=env, name="t")
        try:
            for _ in range(500):
                if out.with_suffix(".argv").exists() and out.with_suffix(".argv").read_text():
                    break
                await asyncio.sleep(0.01)
            assert out.with_suffix(".key").read_text() == proc.api_key
            assert proc.api_key not in out.with_suffix(".argv").read_text()
            assert proc.api_key not in " ".join(proc.argv)
            keys.append(proc.api_key)
        finally:
            await proc.stop(grace=1.0)
    assert len(keys[0]) >= 32 and keys[0] != keys[1]
