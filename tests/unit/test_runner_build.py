"""runners/build.py + runners/cuda.py decisions for the CUDA variant (no toolkit run needed)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

RUNNERS = Path(__file__).resolve().parents[2] / "runners"
sys.path.insert(0, str(RUNNERS))

import build  # noqa: E402
import cuda  # noqa: E402


def toolkit(tmp_path: Path, stub: bool = False) -> cuda.CudaToolkit:
    return cuda.CudaToolkit(tmp_path / "cuda", (13, 0), tmp_path / "cublas",
                            tmp_path / "libcuda.so" if stub else None)


def test_default_architectures_are_ollamas(monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    monkeypatch.setattr(cuda, "toolkit", lambda **_: toolkit(tmp_path))
    flags = build.cmake_flags("cuda", "all", [])
    assert f"-DCMAKE_CUDA_ARCHITECTURES={cuda.OLLAMA_CUDA13_ARCHITECTURES}" in flags
    assert "75-virtual" in cuda.OLLAMA_CUDA13_ARCHITECTURES
    assert "121-virtual" in cuda.OLLAMA_CUDA13_ARCHITECTURES
    one = build.cmake_flags("cuda", "all", [], "90")
    assert "-DCMAKE_CUDA_ARCHITECTURES=90" in one
    assert build.cache_key("cuda", flags) != build.cache_key("cuda", one)
    # An explicit -D wins over both.
    forced = build.cmake_flags("cuda", "all", ["-DCMAKE_CUDA_ARCHITECTURES=86"], "90")
    assert [f for f in forced if "ARCHITECTURES" in f] == ["-DCMAKE_CUDA_ARCHITECTURES=86"]


def test_cpu_build_never_asks_for_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(**_: object) -> None:
        raise AssertionError("cpu build looked for CUDA")

    monkeypatch.setattr(cuda, "toolkit", boom)
    assert not any("CUDA" in f for f in build.cmake_flags("cpu", "all", []))


def test_cublas_and_driver_flags(tmp_path: Path) -> None:
    flags = toolkit(tmp_path).cmake_flags()
    assert f"-DCUDA_cublas_LIBRARY={tmp_path}/cublas/lib/libcublas.so.13" in flags
    assert f"-DCMAKE_CUDA_FLAGS=-I{tmp_path}/cublas/include" in flags
    assert "-DGGML_CUDA_NO_VMM=ON" in flags  # nothing to link libcuda against
    with_stub = toolkit(tmp_path, stub=True).cmake_flags()
    assert "-DGGML_CUDA_NO_VMM=ON" not in with_stub
    assert f"-DCUDA_cuda_driver_LIBRARY={tmp_path}/libcuda.so" in with_stub


def test_cublas_dir_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    d = tmp_path / "cb"
    (d / "include").mkdir(parents=True)
    (d / "lib").mkdir()
    monkeypatch.setenv("OLLAMAPY_CUBLAS_DIR", str(d))
    with pytest.raises(SystemExit, match=r"no include/cublas_v2\.h"):
        cuda.find_cublas(tmp_path, (13, 0), fetch=False)
    (d / "include" / "cublas_v2.h").write_text("")
    (d / "lib" / "libcublas.so.13").write_text("")
    assert cuda.find_cublas(tmp_path, (13, 0), fetch=False) == d


def test_runtime_libraries_ship_with_the_runner(tmp_path: Path) -> None:
    t = toolkit(tmp_path)
    for p in (t.cublas / "lib" / "libcublas.so.13", t.cublas / "lib" / "libcublasLt.so.13",
              t.root / "lib64" / "libcudart.so.13"):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("")
    assert [p.name for p in t.runtime_libraries()] == [
        "libcublas.so.13", "libcublasLt.so.13", "libcudart.so.13"]
