"""Issue 2: no third-party source, build output or model file is committed, and `ollamapy
runners` fails with a clear message when no runner exists."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

REPO = Path(__file__).resolve().parents[2]
BINARY_SUFFIXES = (".gguf", ".whl", ".tar.gz", ".zip", ".so", ".dylib", ".dll", ".a", ".o",
                   ".bin", ".safetensors")


def tracked_files() -> list[str]:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout (e.g. an unpacked sdist): nothing is committed here")
    r = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return [p for p in r.stdout.decode().split("\0") if p]


def test_no_third_party_or_model_files_are_tracked() -> None:
    files = tracked_files()
    assert "pyproject.toml" in files  # the listing is real
    bad = [f for f in files if f.startswith(("vendor/", "ollamapy/runners/"))
           or (f.startswith("runners/") and f.count("/") > 1)  # runners/<variant>/... outputs
           or f.endswith(BINARY_SUFFIXES)]
    assert bad == []
    big = [f for f in files if (REPO / f).is_file() and (REPO / f).stat().st_size > 1 << 20]
    assert big == []  # a model or a vendored tree would be far larger than any source file


def test_runners_command_without_runners(monkeypatch: pytest.MonkeyPatch) -> None:
    from ollamapy.cli import runners

    monkeypatch.setattr(runners, "find_runners", lambda: [])
    r = CliRunner().invoke(runners.runners, [])
    assert r.exit_code == 1
    assert "no llama-server runner found: run `make runner`" in r.output
