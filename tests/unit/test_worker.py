"""`ollamapy worker`: argv/env/bind decisions (pure), the unit file, and the CLI's refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from ollamapy.errors import BadRequest
from ollamapy.worker.options import (
    BASE_DATA_BYTES,
    HEADROOM_MIN,
    MiB,
    WorkerOptions,
    backoff,
    check_bind,
    data_limit,
    log_level_for,
    rpc_server_argv,
    rpc_server_env,
    validate,
)

REPO = Path(__file__).resolve().parents[2]


def test_argv_defaults_cache_on_loopback() -> None:
    argv = rpc_server_argv(Path("/r/ggml-rpc-server"), WorkerOptions())
    assert argv == ["/r/ggml-rpc-server", "--host", "127.0.0.1", "--port", "50052", "--cache"]


def test_argv_devices_threads_no_cache() -> None:
    o = WorkerOptions(port=6000, devices=("CUDA0", "CUDA1"), threads=4, use_cache=False)
    assert rpc_server_argv(Path("s"), o) == ["s", "--host", "127.0.0.1", "--port", "6000",
                                             "--device", "CUDA0,CUDA1", "--threads", "4"]


def test_env_pins_cache_dir_and_drops_llama_args(tmp_path: Path) -> None:
    env = rpc_server_env({"PATH": "/bin", "LLAMA_ARG_HOST": "0.0.0.0", "LLAMA_CACHE": "/x"},
                         WorkerOptions(), tmp_path)
    assert env == {"PATH": "/bin", "LLAMA_CACHE": str(tmp_path)}
    env = rpc_server_env({}, WorkerOptions(cache=Path("/c")), tmp_path)
    assert env["LLAMA_CACHE"] == "/c"


def test_loopback_binds_silently() -> None:
    assert check_bind(WorkerOptions(host="127.0.0.1")) is None
    assert check_bind(WorkerOptions(host="localhost")) is None
    assert check_bind(WorkerOptions(host="::1")) is None


def test_remote_bind_needs_the_flag_and_warns() -> None:
    with pytest.raises(BadRequest, match="--allow-remote"):
        check_bind(WorkerOptions(host="0.0.0.0"))
    warning = check_bind(WorkerOptions(host="10.8.0.2", allow_remote=True))
    assert warning is not None and "unauthenticated" in warning and "WireGuard" in warning


@pytest.mark.parametrize("opts", [WorkerOptions(port=0), WorkerOptions(mem=-1),
                                  WorkerOptions(devices=("CUDA0;rm",)),
                                  WorkerOptions(host="a b")])
def test_validate_rejects(opts: WorkerOptions) -> None:
    with pytest.raises(BadRequest):
        validate(opts)


def test_mem_becomes_a_data_limit() -> None:
    assert data_limit(WorkerOptions()) is None
    assert data_limit(WorkerOptions(mem=100)) == 100 * MiB + BASE_DATA_BYTES + HEADROOM_MIN
    assert data_limit(WorkerOptions(mem=8192)) == 9216 * MiB + BASE_DATA_BYTES  # 1/8 headroom


def test_backoff_doubles_and_caps() -> None:
    assert [backoff(n) for n in range(7)] == [0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0]


def test_probe_chatter_is_debug() -> None:
    assert log_level_for("Accepted client connection") == "debug"
    assert log_level_for("Client connection closed") == "debug"
    assert log_level_for("Failed to create server socket") == "warning"
    assert log_level_for("  endpoint       : 127.0.0.1:50052") == "info"


def test_cli_refuses_remote_bind_without_flag() -> None:
    from ollamapy.cli.worker import worker

    r = CliRunner().invoke(worker, ["--host", "0.0.0.0"])
    assert r.exit_code == 1
    assert "--allow-remote" in r.output and "unauthenticated" in r.output


def test_unit_file() -> None:
    text = (REPO / "packaging" / "ollamapy-worker.service").read_text()
    assert "ExecStart=/opt/ollamapy/.venv/bin/ollamapy worker --host 127.0.0.1" in text
    assert "Restart=always" in text and "User=ollamapy" in text
    assert "UNAUTHENTICATED" in text


def test_runners_lists_the_rpc_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ollamapy.cli import runners

    d = tmp_path / "cuda" / "bin"
    d.mkdir(parents=True)
    (tmp_path / "cuda" / "manifest.json").write_text('{"variant": "cuda"}')
    for name in ("llama-server", "ggml-rpc-server"):
        (d / name).write_text("#!/bin/sh\n")
        (d / name).chmod(0o755)
    monkeypatch.setenv("OLLAMAPY_RUNNERS", str(tmp_path))
    from ollamapy.placement import gpu

    monkeypatch.setattr(gpu, "discover", lambda: gpu.Inventory(gpu.SystemInfo(1 << 30, 1 << 30)))
    r = CliRunner().invoke(runners.runners, [])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    i = next(i for i, ln in enumerate(lines) if ln.startswith("cuda"))
    assert lines[i + 1].split()[0] == "rpc" and lines[i + 1].endswith(str(d / "ggml-rpc-server"))
    assert "not used here: no cuda GPU found" in r.output  # issue 17: says why


def test_unit_file_verifies(tmp_path: Path) -> None:
    import shutil
    import subprocess
    import sys

    tool = shutil.which("systemd-analyze")
    venv = Path(sys.executable).parent.parent
    if tool is None or not (venv / "bin" / "ollamapy").exists():
        pytest.skip("needs systemd-analyze and an installed `ollamapy` entry point")
    unit = tmp_path / "ollamapy-worker.service"
    text = (REPO / "packaging" / "ollamapy-worker.service").read_text()
    unit.write_text(text.replace("/opt/ollamapy/.venv", str(venv)))
    r = subprocess.run([tool, "verify", "--man=no", str(unit)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and "ollamapy-worker.service" not in r.stderr, r.stderr
