"""Parity gaps found side by side with Ollama, end to end (`ollamapy serve`, the local test
registry, the real llama-quantize and llama-server):

- `/api/create` with `from` naming a model that is not in the store pulls it first;
- `/api/tags` details carry `context_length` and `embedding_length`;
- `/api/show` returns `tensors` without `verbose`, as Ollama does;
- `create --quantize` of an F16 GGUF with llama-quantize, Ollama's progress, a model that runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ollamapy.gguf import read_gguf
from ollamapy.store import store as st
from tests.conftest import FAST_PARAMS, ServerProc, need, start_server, stop_server
from tests.registry_server import TestRegistry

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

REPO, TAG = "library/smollm2", "135m"


@pytest.fixture(scope="module")
def f16_gguf(runner_binary: Path, model_path: Path,
             tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2 dequantized to F16 with llama-quantize (what `create -q` starts from)."""
    tool = runner_binary.parent / "llama-quantize"
    if not os.access(tool, os.X_OK):
        need("llama-quantize", "make runner-test")
    out = tmp_path_factory.mktemp("f16") / "smollm2-f16.gguf"
    r = subprocess.run([str(tool), "--allow-requantize", str(model_path), str(out), "F16", "2"],
                       capture_output=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:]
    assert read_gguf(out).file_type == "F16"
    return out


@pytest.fixture
def registry(model_path: Path) -> Iterator[TestRegistry]:
    with TestRegistry() as reg:
        reg.add_model(REPO, TAG, model_path)
        yield reg


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[ServerProc]:
    s = start_server(tmp_path, {"OLLAMA_NUM_PARALLEL": "1", "OLLAMA_CONTEXT_LENGTH": "1024"})
    yield s
    stop_server(s)
    assert "Traceback" not in s.log(), s.log()


def stream(s: ServerProc, body: dict[str, Any]) -> list[dict[str, Any]]:
    with httpx.stream("POST", s.url + "/api/create", json=body, timeout=300) as r:
        assert r.status_code == 200, r.read()
        return [json.loads(line) for line in r.iter_lines() if line]


def test_create_from_a_missing_model_pulls_it(srv: ServerProc, registry: TestRegistry) -> None:
    base = f"http://{registry.host}/{REPO}:{TAG}"
    msgs = stream(srv, {"model": "mine", "from": base, "system": "Be brief."})
    statuses = [m.get("status") for m in msgs]
    assert statuses[0] == "pulling manifest"
    assert "verifying sha256 digest" in statuses
    assert statuses.count("success") == 1 and statuses[-1] == "success"
    assert not any("error" in m for m in msgs)
    tags = httpx.get(srv.url + "/api/tags").json()["models"]
    names = {m["name"] for m in tags}
    assert "mine:latest" in names and f"{registry.host}/{REPO}:{TAG}" in names
    for m in tags:
        assert m["details"]["context_length"] == 8192
        assert m["details"]["embedding_length"] == 576
    show = httpx.post(srv.url + "/api/show", json={"model": "mine"}).json()
    assert show["system"] == "Be brief."
    assert len(show["tensors"]) == 272  # without verbose, as Ollama
    ps = httpx.get(srv.url + "/api/ps").json()
    assert ps == {"models": []}


def test_create_quantize(srv: ServerProc, f16_gguf: Path, tmp_path: Path) -> None:
    digest = st.sha256_file(f16_gguf)
    with f16_gguf.open("rb") as f:
        r = httpx.post(srv.url + f"/api/blobs/{digest}", content=f, timeout=300)
    assert r.status_code == 201, r.text
    bad = httpx.post(srv.url + "/api/create", json={
        "model": "q", "files": {"m.gguf": digest}, "quantize": "q3_k"}, timeout=60)
    assert bad.status_code == 400
    assert bad.json()["error"].startswith("unsupported quantization type Q3_K")
    msgs = stream(srv, {"model": "smol-q8", "files": {"m.gguf": digest}, "quantize": "q8_0",
                        "parameters": FAST_PARAMS})
    statuses = [m.get("status") for m in msgs]
    steps = [m for m in msgs if m.get("status") == "quantizing F16 model to Q8_0"]
    assert steps and steps[-1]["completed"] == steps[-1]["total"] == f16_gguf.stat().st_size
    assert all(m["digest"] == "0000000000000000000" for m in steps)
    assert statuses.index("verifying conversion") > statuses.index(steps[0]["status"])
    assert statuses[-1] == "success"
    show = httpx.post(srv.url + "/api/show", json={"model": "smol-q8"}).json()
    assert show["details"]["quantization_level"] == "Q8_0"
    store = st.ModelStore(srv.models_dir)
    m = store.resolve("smol-q8")
    assert read_gguf(m.model_path).file_type == "Q8_0"
    assert m.model_path.stat().st_size < f16_gguf.stat().st_size
    assert not [p for p in store.blobs_dir.iterdir() if "tmp" in p.name]
    r = httpx.post(srv.url + "/api/generate", json={
        "model": "smol-q8", "prompt": "Hi", "stream": False,
        "options": {"num_predict": 4, "temperature": 0}}, timeout=300)
    assert r.status_code == 200 and r.json()["eval_count"] > 0, r.text
    # a quantized model cannot be quantized again (Ollama's rule)
    again = httpx.post(srv.url + "/api/create", json={"model": "x", "from": "smol-q8",
                                                     "quantize": "q4_K_M"}, timeout=60)
    assert again.status_code == 400
    assert again.json()["error"] == "quantization is only supported for F16, BF16 and F32 models"


def test_cli_create_quantize_progress(srv: ServerProc, f16_gguf: Path, tmp_path: Path) -> None:
    mf = tmp_path / "Modelfile"
    mf.write_text(f"FROM {f16_gguf}\nRENDERER qwen3-coder\nPARSER qwen3-coder\n")
    env = {**os.environ, "OLLAMA_HOST": srv.host}
    p = subprocess.run([sys.executable, "-m", "ollamapy.cli.main", "create", "cli-q", "-f",
                        str(mf), "-q", "q4_K_M"], env=env, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr
    out = p.stdout + p.stderr
    assert "quantizing F16 model to Q4_K_M" in out and "success" in out
    show = subprocess.run([sys.executable, "-m", "ollamapy.cli.main", "show", "cli-q",
                           "--modelfile"], env=env, capture_output=True, text=True, timeout=60)
    assert "RENDERER qwen3-coder\nPARSER qwen3-coder\n" in show.stdout
