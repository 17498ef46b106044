"""Decode speed of the runner's CPU backend variants on this machine (SmolLM2, 128 tokens).

Why: the cpu runner ships every ISA variant (GGML_CPU_ALL_VARIANTS) instead of -march=native;
this measures what the portable baseline would cost and shows the loader's pick is the fast one.
Run: `.venv/bin/python bench/cpu_variants.py [variants...]` (default: x64 haswell auto).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from ollamapy import default_model
from ollamapy.runner.locate import pick_runner
from ollamapy.runner.process import child_env, free_port

ROUNDS = 3


def runner_with_only(src: Path, variant: str, dest: Path) -> Path:
    """A copy of the runner dir keeping one libggml-cpu-<variant>.so ('auto' keeps all)."""
    shutil.copytree(src, dest, symlinks=True)
    if variant != "auto":
        for f in (dest / "bin").glob("libggml-cpu-*.so"):
            if f.name != f"libggml-cpu-{variant}.so":
                f.unlink()
    return dest / "bin" / "llama-server"


def post(url: str, body: dict) -> dict:
    headers = {"Content-Type": "application/json"}
    req = urllib.request.Request(url, json.dumps(body).encode(), headers)
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())


def measure(binary: Path, model: Path) -> tuple[str, list[float]]:
    port = free_port()
    proc = subprocess.Popen(
        [str(binary), "-m", str(model), "--host", "127.0.0.1", "--port", str(port), "-c", "2048",
         "-np", "1", "-t", str(os.cpu_count() or 2), "--no-ui", "--offline"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=child_env(os.environ, Path(tempfile.mkdtemp())))
    try:
        for _ in range(600):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.05)
        body = {"prompt": "Write a story about a robot.", "n_predict": 128, "ignore_eos": True,
                "cache_prompt": False, "temperature": 0}
        maps = Path(f"/proc/{proc.pid}/maps")
        picked = next((ln.rsplit("/", 1)[-1] for ln in maps.read_text().splitlines()
                       if "libggml-cpu-" in ln), "?") if maps.exists() else "?"
        url = f"http://127.0.0.1:{port}/completion"
        rates = [post(url, body)["timings"]["predicted_per_second"] for _ in range(ROUNDS)]
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    return picked, rates


def main() -> None:
    variants = sys.argv[1:] or ["x64", "haswell", "auto"]
    src = pick_runner("cpu").binary.parent.parent
    model = default_model.ensure()
    print(f"{'variant':<16}{'loaded backend':<34}{'decode tok/s (median of 3)':>28}")
    with tempfile.TemporaryDirectory() as tmp:
        for i, v in enumerate(variants):
            binary = runner_with_only(src, v, Path(tmp) / f"{i}-{v}")
            picked, rates = measure(binary, model)
            print(f"{v:<16}{picked:<34}{statistics.median(rates):>28.1f}")


if __name__ == "__main__":
    main()
