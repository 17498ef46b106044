"""`make runner`: build llama-server variants from vendor/llama.cpp, cached outside the clone.

The cache key covers everything that changes the binary: the pinned llama.cpp sdist checksum, the
variant, the CPU-variant mode, extra CMake flags, the compiler and our CMakeLists.txt. A hit copies
the cached runner into runners/<variant>/ in about a second, also from a fresh clone.

CPU builds default to GGML_BACKEND_DL + GGML_CPU_ALL_VARIANTS: one runner directory that picks the
best kernels for the CPU it runs on (see README "Runner builds" for the measurement behind it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cuda
from pins import REPO, cache_dir, pins

from ollamapy.runner.variants import BUILDABLE as VARIANTS  # the one variant table (stdlib only)
from ollamapy.runner.variants import backend

# What a runner directory holds besides the shared libraries: the server ollamapy supervises, the
# RPC worker `ollamapy worker` supervises, and the quantizer `create --quantize` runs.
BINARIES = ("llama-server", "ggml-rpc-server", "llama-quantize")


def have(tool: str) -> bool:
    return shutil.which(tool) is not None


def gpu_variants_present() -> list[str]:
    """GPU variants whose toolchain and a device are both here; the rest need VARIANT=... ."""
    found = []
    if have("nvcc") and have("nvidia-smi"):
        if subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode == 0:
            found.append("cuda")
    if have("hipcc") and Path("/dev/kfd").exists():
        found.append("rocm")
    if platform.system() == "Darwin" and have("xcrun"):
        found.append("metal")
    return found


def compiler_id() -> str:
    cc = os.environ.get("CC") or "cc"
    try:
        out = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout
    except OSError:
        return "unknown"
    return out.splitlines()[0] if out else "unknown"


def cmake_flags(variant: str, cpu_variants: str, extra: list[str],
                cuda_architectures: str = "") -> list[str]:
    pin = pins()["llama_cpp"]
    flags = [
        f"-DOLLAMAPY_VARIANT={variant}",
        f"-DOLLAMAPY_CPU_VARIANTS={cpu_variants}",
        f"-DOLLAMAPY_LLAMA_COMMIT={pin['commit'][:7]}",
        f"-DOLLAMAPY_LLAMA_BUILD_NUMBER={pin['build_number']}",
        "-DCMAKE_BUILD_TYPE=Release",
    ]
    if variant == "cuda":
        if not any("CMAKE_CUDA_ARCHITECTURES" in e for e in extra):
            # Default: the set Ollama ships (PTX for 7.5 .. 12.1); `90` for one quick arch,
            # `native` for the GPUs of this machine.
            archs = cuda_architectures or cuda.OLLAMA_CUDA13_ARCHITECTURES
            flags.append(f"-DCMAKE_CUDA_ARCHITECTURES={archs}")
        flags += cuda.toolkit().cmake_flags()
    return flags + extra


def cache_key(variant: str, flags: list[str]) -> str:
    pin = pins()["llama_cpp"]
    h = hashlib.sha256()
    for part in (pin["sdist_sha256"], variant, platform.machine(), compiler_id(),
                 (REPO / "CMakeLists.txt").read_text(), *flags):
        h.update(part.encode() + b"\0")
    return h.hexdigest()[:16]


def build(variant: str, cpu_variants: str, extra: list[str], jobs: int,
          cuda_architectures: str = "") -> Path:
    flags = cmake_flags(variant, cpu_variants, extra, cuda_architectures)
    key = cache_key(variant, flags)
    cached = cache_dir() / "runners" / f"{variant}-{key}"
    if not (cached / "manifest.json").exists():
        src = REPO / "vendor" / "llama.cpp"
        if not (src / "CMakeLists.txt").exists():
            sys.exit("runner: vendor/llama.cpp is missing; run `make vendor`")
        bdir = cache_dir() / "build" / f"{variant}-{key}"
        gen = ["-G", "Ninja"] if have("ninja") else []
        started = time.monotonic()
        subprocess.run(["cmake", "-S", str(REPO), "-B", str(bdir), *gen, *flags], check=True)
        subprocess.run(["cmake", "--build", str(bdir), "--target", "runner", "-j", str(jobs)],
                       check=True)
        seconds = round(time.monotonic() - started)
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{variant}-", dir=cached.parent))
        tmp.chmod(0o755)  # mkdtemp makes 0700: a service user must be able to run the runner
        bin_dir = tmp / "bin"
        bin_dir.mkdir(mode=0o755)
        bin_dir.chmod(0o755)  # whatever the umask (root's is often 077)
        for f in (bdir / "bin").iterdir():
            if f.name in BINARIES or ".so" in f.name or f.suffix in (".dylib", ".metallib"):
                shutil.copy2(f, bin_dir / f.name, follow_symlinks=False)
                world_readable(bin_dir / f.name)
        if variant == "cuda":  # cuBLAS + cudart next to libggml-cuda.so ($ORIGIN)
            for lib in cuda.toolkit(fetch=False).runtime_libraries():
                shutil.copy2(lib, bin_dir / lib.name)
        manifest = {
            "variant": variant,
            "backend": backend(variant),
            "llama_cpp_commit": pins()["llama_cpp"]["commit"],
            "llama_cpp_sdist": pins()["llama_cpp"]["sdist_file"],
            "cmake_flags": flags,
            "compiler": compiler_id(),
            "machine": platform.machine(),
            "cache_key": key,
            "build_seconds": seconds,
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        if cached.exists():
            shutil.rmtree(cached)
        tmp.rename(cached)
        shutil.rmtree(bdir, ignore_errors=True)
        print(f"runner: built {variant} in {seconds}s -> {cached}")
    else:
        print(f"runner: {variant} cache hit ({key})")
    dest = REPO / "runners" / variant
    if _manifest_key(dest) == key:
        return dest  # already in place: leave a runner that may be running untouched
    staging = REPO / "runners" / f".{variant}.new"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(cached, staging, symlinks=True)
    if dest.exists():
        shutil.rmtree(dest)
    staging.rename(dest)
    return dest


def world_readable(path: Path) -> None:
    """Executables 0755, the rest 0644: a build under umask 077 leaves 0700/0600 files that the
    service user cannot load. Symlinks (versioned .so names) are left as they are."""
    if path.is_symlink():
        return
    path.chmod(0o755 if path.stat().st_mode & 0o100 else 0o644)


def _manifest_key(d: Path) -> str | None:
    try:
        return json.loads((d / "manifest.json").read_text()).get("cache_key")
    except (OSError, ValueError):
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--variant", default="auto", help="auto (cpu + GPUs present) or one of "
                    + ", ".join(VARIANTS))
    ap.add_argument("--cpu-variants", default=os.environ.get("OLLAMAPY_CPU_VARIANTS", "all"),
                    choices=("all", "native"))
    ap.add_argument("--jobs", type=int, default=int(os.environ.get("JOBS") or os.cpu_count() or 2))
    ap.add_argument("--cuda-architectures", default=os.environ.get("CUDA_ARCHITECTURES", ""),
                    help="CMAKE_CUDA_ARCHITECTURES (default: the set Ollama ships; e.g. 90, "
                    "native)")
    ap.add_argument("cmake_args", nargs="*", help="extra -D flags")
    args = ap.parse_args()
    if args.variant == "auto":
        todo = ["cpu", *gpu_variants_present()]
    elif args.variant in VARIANTS:
        todo = [args.variant]
    else:
        sys.exit(f"runner: unknown variant {args.variant!r} (choose auto or {', '.join(VARIANTS)})")
    for v in todo:
        dest = build(v, args.cpu_variants, args.cmake_args, args.jobs, args.cuda_architectures)
        print(f"runner: {v} -> {dest}")


if __name__ == "__main__":
    main()
