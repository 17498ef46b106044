"""issue 17 on a real GPU: discovery vs nvidia-smi, full and partial offload through the server,
two models fitting or evicting, an over-size load refused. Numbers go to stdout (`-s`) for the
note; assertions are about correctness, not speed."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ollamapy import default_model
from ollamapy.placement import gpu, memory
from tests.conftest import (
    FAST_PARAMS,
    ServerProc,
    free_port,
    need,
    register_default_model,
    start_server,
    stop_server,
)
from tests.gpu.conftest import SmiGpu

MiB = 1024 * 1024
SMOL = "smollm2:135m"
GEMMA = "gemma3:270m"
NGL = re.compile(r"(?:--n-gpu-layers|-ngl) (\d+)")


def gemma_path() -> Path | None:
    found = sorted((default_model.cache_dir() / "models").glob("gemma-3-270m*.gguf"))
    return found[0] if found else None


def serve(tmp_path: Path, env: dict[str, str] | None = None, gemma: bool = False) -> ServerProc:
    models = tmp_path / "models"
    register_default_model(models, SMOL, params=FAST_PARAMS)
    if gemma:
        g = gemma_path()
        if g is None:
            need("Gemma 3 270M", "make gemma-file")
            raise AssertionError
        from ollamapy.store.register import register_gguf
        register_gguf(models, g, GEMMA)
    return start_server(tmp_path, {"OLLAMA_LLM_LIBRARY": "cuda", **(env or {})})


@pytest.fixture
def server(tmp_path: Path, cuda_runner: Path) -> Iterator[ServerProc]:
    s = serve(tmp_path)
    yield s
    stop_server(s)


def generate(s: ServerProc, model: str, n: int = 64, **options: object) -> httpx.Response:
    return httpx.post(s.url + "/api/generate", timeout=300, json={
        "model": model, "prompt": "Write a long story about the sea.", "stream": False,
        "options": {"num_predict": n, "temperature": 0, **options}})


def ps(s: ServerProc) -> list[dict]:
    return httpx.get(s.url + "/api/ps", timeout=30).json()["models"]


def ngl_used(s: ServerProc) -> list[int]:
    return [int(m.group(1)) for m in NGL.finditer(s.log())]


def nvml_used_mib() -> int:
    r = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                       capture_output=True, text=True, timeout=30)
    return int(r.stdout.split()[0])


def test_discovery_matches_nvidia_smi(smi_gpus: list[SmiGpu]) -> None:
    found = gpu.nvidia_devices()
    assert [d.id for d in found] == [g.uuid for g in smi_gpus]
    for d, g in zip(found, smi_gpus, strict=True):
        assert abs(d.total // MiB - g.total_mib) <= 1
        assert abs(d.free // MiB - g.free_mib) <= 256  # sampled at different instants
        assert d.compute == g.compute
        print(f"\n{d.name}: total {d.total // MiB} MiB, free {d.free // MiB} MiB, "
              f"compute {d.compute} (nvidia-smi: {g.total_mib}/{g.free_mib} MiB, {g.compute})")


@pytest.mark.parametrize("model", [SMOL, GEMMA])
def test_full_offload(tmp_path: Path, cuda_runner: Path, model: str) -> None:
    s = serve(tmp_path, gemma=model == GEMMA)
    try:
        r = generate(s, model, n=128)
        assert r.status_code == 200, r.text
        body = r.json()
        [m] = ps(s)
        assert m["size_vram"] == m["size"] > 0  # `ollama ps`: 100% GPU
        path = default_model.model_path() if model == SMOL else gemma_path()
        assert path is not None
        facts = memory.read_facts(path)
        assert ngl_used(s)[-1] == facts.block_count + 1
        tps = body["eval_count"] / (body["eval_duration"] / 1e9)
        print(f"\n{model}: -ngl {facts.block_count + 1}, decode {tps:.1f} tok/s on GPU")
    finally:
        stop_server(s)


def test_partial_offload_with_gpu_overhead(tmp_path: Path, cuda_runner: Path,
                                           smi_gpus: list[SmiGpu]) -> None:
    leave = 300 * MiB  # only a few hundred MiB stay free for the model
    free = gpu.nvidia_devices()[0].free
    num_ctx = 32768  # a KV cache far larger than what is left: only some layers fit
    s = serve(tmp_path, {"OLLAMA_GPU_OVERHEAD": str(free - leave)})
    try:
        before = nvml_used_mib()
        r = generate(s, SMOL, n=16, num_ctx=num_ctx)
        assert r.status_code == 200, r.text
        used = nvml_used_mib() - before
        [m] = ps(s)
        ngl = ngl_used(s)[-1]
        assert 0 < m["size_vram"] < m["size"]  # a split, shown by /api/ps
        assert used * MiB < leave, f"VRAM used {used} MiB of {leave // MiB} MiB left"
    finally:
        stop_server(s)
    # llama.cpp's own fit for the same free memory: --fit on with a target margin of the overhead.
    port = free_port()
    target = (free - leave) // MiB
    p = subprocess.Popen([str(cuda_runner), "-m", str(default_model.model_path()), "-c",
                          str(num_ctx), "--fit", "on", "--fit-target", str(target), "--port",
                          str(port), "--log-verbosity", "4"], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        lines: list[str] = []
        assert p.stdout is not None
        while time.monotonic() < deadline:
            line = p.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "offloaded" in line and "layers to GPU" in line:
                break
        fit = [int(x) for ln in lines for x in re.findall(r"offloaded (\d+)/\d+ layers", ln)]
    finally:
        p.kill()
        p.wait()
    print(f"\npartial: ollamapy -ngl {ngl}, llama.cpp --fit {fit[-1] if fit else '?'}, VRAM used "
          f"{used} MiB of {leave // MiB} MiB left; /api/ps {m['size_vram']}/{m['size']}")
    assert fit and abs(fit[-1] - ngl) <= 2


def test_two_models_fit_then_evict(tmp_path: Path, cuda_runner: Path) -> None:
    s = serve(tmp_path, gemma=True)
    try:
        assert generate(s, SMOL, n=4).status_code == 200
        assert generate(s, GEMMA, n=4).status_code == 200
        assert {m["name"] for m in ps(s)} == {SMOL, GEMMA}  # 139 GiB: both fit
    finally:
        stop_server(s)
    # Now leave room for about one of them: loading the second evicts the first.
    free = gpu.nvidia_devices()[0].free
    s = serve(tmp_path / "b", {"OLLAMA_GPU_OVERHEAD": str(free - 700 * MiB)}, gemma=True)
    try:
        assert generate(s, SMOL, n=4, num_ctx=2048).status_code == 200
        assert generate(s, GEMMA, n=4, num_ctx=2048).status_code == 200
        names = [m["name"] for m in ps(s)]
        print(f"\nwith 700 MiB free: loaded {names}")
        assert names == [GEMMA]
    finally:
        stop_server(s)


def test_oversize_load_is_refused_cleanly(tmp_path: Path, cuda_runner: Path) -> None:
    free = gpu.nvidia_devices()[0].free
    s = serve(tmp_path, {"OLLAMA_GPU_OVERHEAD": str(free - 64 * MiB)})
    try:
        # Every layer forced onto a GPU with 64 MiB left: a clear error, not a crashed server.
        r = generate(s, SMOL, n=4, num_gpu=999, num_ctx=32768)
        assert r.status_code >= 400 and r.json().get("error"), r.text
        print(f"\nover-size load: {r.status_code} {r.json()['error'][:200]}")
        assert httpx.get(s.url + "/", timeout=10).status_code == 200
        assert generate(s, SMOL, n=4).status_code == 200  # and the next normal load works
    finally:
        stop_server(s)
