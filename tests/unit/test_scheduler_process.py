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


def test_bind_failure_detection():
    assert is_bind_failure("0.00.0 E srv  init: couldn't bind HTTP server socket, hostname: "
                           "127.0.0.1, port: 8080")
    assert not is_bind_failure("error loading model")
