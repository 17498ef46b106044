import json
import os
from pathlib import Path

import pytest

from ollamapy.errors import RunnerNotFound
from ollamapy.runner.locate import find_runners, pick_runner


def make_runner(base: Path, variant: str, commit: str = "abc") -> Path:
    d = base / variant / "bin"
    d.mkdir(parents=True)
    exe = d / "llama-server"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    (base / variant / "manifest.json").write_text(
        json.dumps({"variant": variant, "llama_cpp_commit": commit}))
    return exe


def test_env_dir_comes_first_and_gpu_preferred(tmp_path):
    make_runner(tmp_path / "env", "cpu", "envcommit")
    make_runner(tmp_path / "env", "cuda", "envcommit")
    env = {"OLLAMAPY_RUNNERS": str(tmp_path / "env"), "PATH": ""}
    found = find_runners(env)
    cpu = next(r for r in found if r.variant == "cpu")
    assert cpu.source == "OLLAMAPY_RUNNERS" and cpu.commit == "envcommit"
    assert found[0].variant == "cuda"
    assert pick_runner("cpu", env).variant == "cpu"


def test_missing_variant_is_clear(tmp_path):
    make_runner(tmp_path / "env", "cpu")
    env = {"OLLAMAPY_RUNNERS": str(tmp_path / "env"), "PATH": ""}
    with pytest.raises(RunnerNotFound, match="'rocm' not found"):
        pick_runner("rocm", env)


def test_path_fallback(tmp_path, monkeypatch):
    monkeypatch.setattr("ollamapy.runner.locate.search_dirs", lambda environ=None: [])
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "llama-server"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    found = find_runners({"PATH": str(bindir)})
    assert [r.variant for r in found] == ["system"] and found[0].binary == exe
    assert find_runners({"PATH": ""}) == []
    with pytest.raises(RunnerNotFound, match="make runner"):
        pick_runner("", {"PATH": ""})


def test_not_executable_is_ignored(tmp_path):
    exe = make_runner(tmp_path / "env", "cpu")
    os.chmod(exe, 0o644)
    env = {"OLLAMAPY_RUNNERS": str(tmp_path / "env"), "PATH": ""}
    assert all(r.source != "OLLAMAPY_RUNNERS" for r in find_runners(env))


def test_without_a_gpu_the_cuda_runner_is_skipped_and_the_reason_logged(tmp_path, caplog):
    import logging

    from ollamapy.runner.locate import choose

    make_runner(tmp_path / "env", "cpu")
    make_runner(tmp_path / "env", "cuda")
    make_runner(tmp_path / "env", "rocm")
    env = {"OLLAMAPY_RUNNERS": str(tmp_path / "env"), "PATH": ""}
    runners = find_runners(env)
    picked, skipped = choose(runners, "", [])
    assert picked is not None and picked.variant == "cpu"
    assert skipped == [("cuda", "no cuda GPU found"), ("rocm", "no rocm GPU found")]
    with caplog.at_level(logging.INFO, logger="ollamapy.runner"):
        assert pick_runner("", env, libraries=[]).variant == "cpu"
    reasons = [(r.kv["variant"], r.kv["reason"]) for r in caplog.records  # type: ignore[attr-defined]
               if r.getMessage() == "not using runner"]
    assert reasons == skipped
    # a GPU of the right kind: no skip; OLLAMA_LLM_LIBRARY forces one regardless
    assert choose(runners, "", ["cuda"])[0].variant == "cuda"  # type: ignore[union-attr]
    assert choose(runners, "cuda", [])[0].variant == "cuda"  # type: ignore[union-attr]


def test_variant_table_is_one_table():
    from ollamapy.runner import variants

    assert variants.BUILDABLE == ("cuda", "rocm", "metal", "vulkan", "cpu")
    assert variants.libraries("vulkan") == ("cuda", "rocm") and variants.libraries("cpu") == ()
    assert variants.libraries("system") is None and variants.backend("rocm") == "hip"
