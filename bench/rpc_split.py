"""Decode speed of SmolLM2 local (CPU) vs split over two `ollamapy worker`s on loopback.

Why: issue 15 asks what a split costs; on one machine this isolates the RPC round trips (each
token crosses both workers in sequence), not network bandwidth. Median of ROUNDS alternating runs,
128 tokens, one thread per process. Run: `.venv/bin/python bench/rpc_split.py`.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from ollamapy import default_model
from ollamapy.placement import memory
from ollamapy.placement.rpc import WorkerSpec, layer_sizes, plan_split, query_worker
from ollamapy.runner.locate import pick_runner
from ollamapy.runner.process import free_port

ROUNDS = 3
TOKENS = 128
MiB = 1024 * 1024


def post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=300) as r:
        return json.loads(r.read())


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"llama-server exited {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit("llama-server did not come up")


def decode_tps(binary: Path, model: Path, extra: list[str]) -> float:
    port = free_port()
    p = subprocess.Popen([str(binary), "-m", str(model), "-c", "1024", "-t", "1", "-np", "1",
                          "--port", str(port), *extra], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", p)
        out = post(f"http://127.0.0.1:{port}/completion", {
            "prompt": "Once upon a time", "n_predict": TOKENS, "temperature": 0,
            "ignore_eos": True, "cache_prompt": False})
        return float(out["timings"]["predicted_per_second"])
    finally:
        os.killpg(p.pid, signal.SIGTERM)
        p.wait()


def main() -> None:
    binary = pick_runner("cpu").binary
    model = default_model.model_path()
    with tempfile.TemporaryDirectory() as tmp:
        ports = [free_port(), free_port()]
        workers = [subprocess.Popen([sys.executable, "-m", "ollamapy.cli.main", "worker", "--port",
                                     str(p), "--threads", "1", "--cache", tmp],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                   for p in ports]
        try:
            facts = memory.read_facts(model)
            sizes = layer_sizes(facts.layer_bytes, memory.kv_cache(facts, 1024, 512, 1, "f16"),
                                facts.output_bytes)
            budget = sum(sizes) // 2 + 16 * MiB  # about half the model each: both take layers
            infos = []
            for p in ports:
                spec = WorkerSpec("127.0.0.1", p, budget)
                for _ in range(100):
                    info = asyncio.run(query_worker(spec, deadline_s=1))
                    if info.up:
                        break
                    time.sleep(0.2)
                infos.append(info)
            plan = plan_split(sizes, [], infos, mode="workers")
            print(f"split: {plan.describe()}")
            local, split = [], []
            for _ in range(ROUNDS):
                local.append(decode_tps(binary, model, ["--device", "none", "-ngl", "0"]))
                split.append(decode_tps(binary, model, plan.argv()))
            print(f"decode tok/s ({TOKENS} tokens, median of {ROUNDS}): local "
                  f"{statistics.median(local):.1f} {local}, split over 2 workers "
                  f"{statistics.median(split):.1f} {split}")
        finally:
            for w in workers:
                w.send_signal(signal.SIGTERM)
                w.wait(20)


if __name__ == "__main__":
    main()
