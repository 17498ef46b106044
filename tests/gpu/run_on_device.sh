#!/usr/bin/env bash
# One prepared run for a session lent a GPU machine (device tool `run`): build the CUDA runner with
# every core, then run tests/gpu. Results (log, junit, runner manifest) go to $OUT.
#
#   run(command="bash tests/gpu/run_on_device.sh", carry=["vendor/llama.cpp", ".devcache"],
#       timeout_s=590)
#
# The device machine is bare and offline, and at most 64 MiB travel. So, prepared beforehand here:
#   vendor/llama.cpp   a real directory, not the symlink to main's (53 MiB): `make vendor`
#   .devcache/         (git-ignored via .git/info/exclude) optional: the SmolLM2 GGUF
#                      (models/*.gguf) and wheels for pip (wheels/*.whl) when they fit
# cuBLAS: the script uses the device's CUDA toolkit if it has cuBLAS; else OLLAMAPY_CUBLAS_DIR or
# a `nvidia-cublas` wheel in .devcache/wheels (runners/cuda.py), since pip cannot reach PyPI there.
# CUDA_ARCHITECTURES defaults to `native` here (only the GPU present: fastest build).
set -uo pipefail
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/run.log") 2>&1
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/../.."
echo "== probe $(date -u +%FT%TZ)"
nvidia-smi --query-gpu=name,uuid,memory.total,memory.free,compute_cap --format=csv || true
command -v nvcc && nvcc --version | tail -2
echo "cores: $(nproc)"
ls /usr/local/cuda/include/cublas_v2.h 2>/dev/null || echo "no cuBLAS headers in /usr/local/cuda"

if [ -d .devcache ]; then
  export OLLAMAPY_CACHE=$PWD/.devcache
  if ls .devcache/wheels/*.whl >/dev/null 2>&1; then
    python3 -m pip install --quiet --no-index --find-links .devcache/wheels -e '.[test]' || true
    for w in .devcache/wheels/nvidia_cublas*.whl; do
      [ -e "$w" ] || continue
      python3 -m pip install --quiet --no-deps --no-index --target .devcache/cuda-deps/cublas-13.0 "$w"
    done
  fi
fi
python3 -c "import aiohttp, httpx, pytest, click, pydantic" 2>/dev/null \
  || echo "WARNING: python test deps missing: tests will not import (carry wheels in .devcache/wheels)"

echo "== build cuda runner"
start=$(date +%s)
CUDA_ARCHITECTURES=${CUDA_ARCHITECTURES:-native} \
  python3 runners/build.py --variant cuda --jobs "$(nproc)" || { echo "BUILD FAILED"; exit 1; }
echo "build seconds: $(( $(date +%s) - start ))"
cp runners/cuda/manifest.json "$OUT/manifest-cuda.json" 2>/dev/null || true
ls -la runners/cuda/bin | head -40
runners/cuda/bin/llama-server --list-devices 2>&1 | tail -5

echo "== cpu runner for the CPU vs GPU decode numbers (native ISA: quickest build)"
python3 runners/build.py --variant cpu --cpu-variants native --jobs "$(nproc)" || true

echo "== GPU tests"
python3 -m pytest -q -s -rs tests/gpu --junitxml="$OUT/gpu-junit.xml" -p no:cacheprovider
rc=$?
echo "== done rc=$rc $(date -u +%FT%TZ)"
exit $rc
