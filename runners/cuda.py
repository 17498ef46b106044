"""What a CUDA runner build needs besides nvcc: cuBLAS headers and libraries, the driver stub.

A toolkit assembled from NVIDIA's PyPI wheels (nvcc, cudart, cccl: what these machines have) has
no cuBLAS. The `nvidia-cublas` wheel of the same CUDA minor carries both `include/cublas_v2.h` and
`lib/libcublas*.so.13`; we install it with pip into the ollamapy cache (once, ~420 MB) and point
CMake at it. `OLLAMAPY_CUBLAS_DIR=<dir with include/ and lib/>` uses another copy instead.
The cuBLAS/cudart shared libraries are copied into the runner directory ($ORIGIN RUNPATH), like
Ollama's lib/ollama/cuda_v13, so a runner needs only the NVIDIA driver on the target machine.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from pins import cache_dir

# The architectures Ollama ships for CUDA 13 on Linux (llama/server/CMakePresets.json,
# preset llama_cuda_v13_linux): PTX only, JIT-compiled by the driver for the GPU at hand.
OLLAMA_CUDA13_ARCHITECTURES = ("75-virtual;80-virtual;86-virtual;87-virtual;89-virtual;"
                               "90-virtual;90a-virtual;100-virtual;103-virtual;110-virtual;"
                               "120-virtual;121-virtual")


@dataclass(frozen=True)
class CudaToolkit:
    root: Path  # the nvcc toolkit (bin/nvcc, include/, lib64/)
    version: tuple[int, int]
    cublas: Path  # dir with include/cublas_v2.h and lib/libcublas.so.N
    driver_stub: Path | None  # libcuda.so to link against (None: build with GGML_CUDA_NO_VMM)

    def cmake_flags(self) -> list[str]:
        inc = self.cublas / "include"
        major = self.version[0]
        flags = [
            f"-DCUDAToolkit_ROOT={self.root}",
            f"-DCMAKE_CUDA_COMPILER={self.root / 'bin' / 'nvcc'}",
            f"-DCUDA_cublas_LIBRARY={self.cublas / 'lib' / f'libcublas.so.{major}'}",
            f"-DCUDA_cublasLt_LIBRARY={self.cublas / 'lib' / f'libcublasLt.so.{major}'}",
            f"-DCMAKE_CUDA_FLAGS=-I{inc}",
            f"-DCMAKE_CXX_FLAGS=-I{inc}",
        ]
        if self.driver_stub is None:
            # No libcuda.so to link (no driver, no stubs/): skip the VMM pool, which is the only
            # user of the driver API; ggml falls back to its legacy pool.
            flags.append("-DGGML_CUDA_NO_VMM=ON")
        else:
            flags.append(f"-DCUDA_cuda_driver_LIBRARY={self.driver_stub}")
        return flags

    def runtime_libraries(self) -> list[Path]:
        """Shared libraries a CUDA runner loads besides the driver: shipped next to it."""
        major = self.version[0]
        libs = [self.cublas / "lib" / f"libcublas.so.{major}",
                self.cublas / "lib" / f"libcublasLt.so.{major}"]
        for d in ("lib64", "lib"):
            cudart = self.root / d / f"libcudart.so.{major}"
            if cudart.exists():
                libs.append(cudart)
                break
        return [p for p in libs if p.exists()]


def nvcc_root() -> Path:
    """The toolkit root: $CUDA_HOME/$CUDA_PATH, the dir above the real nvcc, /usr/local/cuda.

    /usr/local/bin/nvcc may be a wrapper script (`exec /usr/local/cuda-13.0/bin/nvcc`), so
    the resolved path alone is not enough."""
    nvcc = shutil.which("nvcc")
    cands = [Path(v) for v in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")) if v]
    if nvcc is not None:
        cands.append(Path(nvcc).resolve().parent.parent)
    cands.append(Path("/usr/local/cuda"))
    for c in cands:
        if (c / "bin" / "nvcc").exists() and (c / "include" / "cuda_runtime.h").exists():
            return c.resolve()
    sys.exit("runner: cuda needs the CUDA toolkit (nvcc and include/cuda_runtime.h); "
             "set CUDA_HOME")


def nvcc_version(root: Path) -> tuple[int, int]:
    out = subprocess.run([str(root / "bin" / "nvcc"), "--version"], capture_output=True,
                         text=True).stdout
    m = re.search(r"release (\d+)\.(\d+)", out)
    if not m:
        sys.exit("runner: cannot read the CUDA version from nvcc --version")
    return int(m.group(1)), int(m.group(2))


def _has_cublas(d: Path, major: int) -> bool:
    return ((d / "include" / "cublas_v2.h").exists()
            and (d / "lib" / f"libcublas.so.{major}").exists())


def find_cublas(root: Path, version: tuple[int, int], *, fetch: bool = True) -> Path:
    major, minor = version
    env = os.environ.get("OLLAMAPY_CUBLAS_DIR")
    if env:
        d = Path(env).expanduser()
        if not _has_cublas(d, major):
            sys.exit(f"runner: OLLAMAPY_CUBLAS_DIR={d} has no include/cublas_v2.h and "
                     f"lib/libcublas.so.{major}")
        return d
    if (root / "include" / "cublas_v2.h").exists():
        for lib in ("lib64", "lib"):
            if (root / lib / f"libcublas.so.{major}").exists():
                return root if lib == "lib" else _toolkit_view(root, lib)
    target = cache_dir() / "cuda-deps" / f"cublas-{major}.{minor}"
    wheel_dir = target / "nvidia" / f"cu{major}"
    if _has_cublas(wheel_dir, major):
        return wheel_dir
    if not fetch:
        sys.exit("runner: no cuBLAS found for CUDA "
                 f"{major}.{minor} (set OLLAMAPY_CUBLAS_DIR)")
    spec = f"nvidia-cublas=={major}.{minor}.*"
    print(f"runner: the CUDA toolkit has no cuBLAS; installing {spec} into {target}")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--target", str(target), spec], check=True)
    if not _has_cublas(wheel_dir, major):
        sys.exit(f"runner: {spec} did not provide {wheel_dir}/include/cublas_v2.h")
    return wheel_dir


def _toolkit_view(root: Path, lib: str) -> Path:
    """A full toolkit keeps libraries in lib64/: present it as include/ + lib/."""
    view = cache_dir() / "cuda-deps" / "toolkit-view"
    view.mkdir(parents=True, exist_ok=True)
    for name, src in (("include", root / "include"), ("lib", root / lib)):
        link = view / name
        if link.is_symlink() and link.resolve() != src.resolve():
            link.unlink()
        if not link.exists():
            link.symlink_to(src)
    return view


def find_driver_stub(root: Path) -> Path | None:
    for p in (root / "lib64" / "stubs" / "libcuda.so", root / "lib" / "stubs" / "libcuda.so",
              root / "targets" / "x86_64-linux" / "lib" / "stubs" / "libcuda.so"):
        if p.exists():
            return p
    for d in ("/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib/aarch64-linux-gnu"):
        p = Path(d) / "libcuda.so"
        if p.exists():
            return p
    return None


def toolkit(*, fetch: bool = True) -> CudaToolkit:
    root = nvcc_root()
    version = nvcc_version(root)
    return CudaToolkit(root, version, find_cublas(root, version, fetch=fetch),
                       find_driver_stub(root))
