"""Issue 2's "Done when" items about the installed tool: `ollamapy runners` shows the built cpu
runner with the pinned llama.cpp commit, and `ollamapy -v/--version` names that commit with or
without a server to ask."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from ollamapy import __version__, pins
from tests.conftest import ServerProc, free_port

pytestmark = pytest.mark.integration
CLI = [sys.executable, "-m", "ollamapy.cli.main"]


def cli(args: list[str], tmp_path: Path, host: str) -> tuple[int, str, str]:
    import subprocess

    env = dict(os.environ, OLLAMA_HOST=host, HOME=str(tmp_path))
    env.pop("OLLAMA_API_KEY", None)
    r = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=60)
    return r.returncode, r.stdout, r.stderr


def test_runners_lists_the_built_cpu_runner(runner_binary: Path, tmp_path: Path) -> None:
    rc, out, err = cli(["runners"], tmp_path, f"127.0.0.1:{free_port()}")
    assert rc == 0, err
    header, *rows = out.splitlines()
    assert header.split() == ["VARIANT", "COMMIT", "SOURCE", "PATH"]
    cpu = [row.split() for row in rows if row.split()[0] == "cpu"]
    assert [pins.llama_cpp().commit[:12], str(runner_binary)] in [[c[1], c[-1]] for c in cpu]


def test_version_without_a_server_names_the_llama_cpp_commit(tmp_path: Path) -> None:
    short = pins.llama_cpp().short_commit
    for flag in ("-v", "--version"):
        rc, out, _ = cli([flag], tmp_path, f"127.0.0.1:{free_port()}")
        assert rc == 0
        assert out == ("Warning: could not connect to a running ollamapy instance\n"
                       f"Warning: client version is {__version__} (llama.cpp {short})\n")


def test_version_from_a_running_server(server: ServerProc, tmp_path: Path) -> None:
    rc, out, _ = cli(["--version"], tmp_path, server.host)
    assert rc == 0
    assert out == f"ollamapy version is {__version__} (llama.cpp {pins.llama_cpp().short_commit})\n"
