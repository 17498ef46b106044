"""`python -m bench joints [N]`: where the wall time of one request goes, joint by joint
(bench/joints_serve.py marks them inside `ollamapy serve`), next to the same child driven
directly. N sequential 3-token `/api/generate` and `/api/chat` streams, alternating with
direct `/completion` ones; medians of each step. On a shared machine only the medians of
steps that run on ollamapy's own loop mean much."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from bench.__main__ import MODEL, PROMPT, child_api_key, load, machine, ollamapy_server

STEPS = [("in", "handler", "request bytes in -> handler (aiohttp, middlewares)"),
         ("handler", "body_read", "body read"),
         ("body_read", "decoded", "decode + validate"),
         ("decoded", "engine", "to the engine (InferenceRequest, chunks, writer)"),
         ("engine", "prefetched", "model prefetch (cache hit)"),
         ("prefetched", "planned", "plan"),
         ("planned", "leased", "scheduler lease"),
         ("leased", "body_built", "template, render, fit, body"),
         ("body_built", "sent", "to the upstream send"),
         ("in", "sent", "= request in -> upstream POST"),
         ("sent", "upstream_head", "upstream: POST -> response head (llama-server)"),
         ("upstream_head", "prepare", "upstream: head -> first token relayed (llama-server)"),
         ("prepare", "first_write", "prepare + first write"),
         ("in", "first_write", "= request in -> first bytes out")]


def main(argv: list[str]) -> None:
    n = int(argv[0]) if argv else 150
    out = Path(tempfile.mkdtemp(prefix="ollamapy-joints-")) / "joints.json"
    msgs = [{"role": "user", "content": PROMPT}]
    opts = {"num_predict": 3, "temperature": 0}
    print(f"bench joints: {machine()}; load {load()}", flush=True)
    with contextlib.ExitStack() as stack:
        ol = stack.enter_context(ollamapy_server(
            1, module="bench.joints_serve", extra_env={"BENCH_JOINTS_OUT": str(out)}))
        key = child_api_key(ol.pid)
        auth = {"Authorization": f"Bearer {key}"} if key else {}
        c = stack.enter_context(httpx.Client(
            timeout=60, limits=httpx.Limits(max_keepalive_connections=0)))
        prompt = c.post(ol.child + "/apply-template", headers=auth, json={
            "messages": msgs, "add_generation_prompt": True}).json()["prompt"]
        paths = {
            "/api/generate": (ol.url + "/api/generate", {
                "model": MODEL, "prompt": PROMPT, "stream": True, "options": opts}, {}),
            "/api/chat": (ol.url + "/api/chat", {
                "model": MODEL, "messages": msgs, "stream": True, "options": opts}, {}),
            "child /completion": (ol.child + "/completion", {
                "prompt": prompt, "stream": True, "n_predict": 3, "temperature": 0,
                "cache_prompt": True}, auth),
        }

        def ttft(url: str, body: dict, headers: dict) -> float:
            t0 = time.perf_counter()
            first = None
            with c.stream("POST", url, json=body, headers=headers) as r:
                for _ in r.iter_raw():
                    if first is None:
                        first = time.perf_counter()
            assert first is not None
            return (first - t0) * 1000

        for p in paths.values():
            for _ in range(5):
                ttft(*p)
        got: dict[str, list[float]] = {k: [] for k in paths}
        for _ in range(n):
            for k in ("/api/generate", "child /completion", "/api/chat", "child /completion"):
                got[k].append(ttft(*paths[k]))
        os.kill(ol.pid, signal.SIGUSR2)
        deadline = time.monotonic() + 10
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.3)
    records = json.loads(out.read_text())[-2 * n:]
    print(f"\nclient TTFT medians (ms), {n} rounds: " + ", ".join(
        f"{k} {statistics.median(v):.2f}" for k, v in got.items()))
    print(f"\ninside ollamapy, medians over {len(records)} requests (ms):")
    for a, b, label in STEPS:
        xs = [(r[b] - r[a]) / 1e6 for r in records if a in r and b in r]
        if xs:
            print(f"  {statistics.median(xs):7.3f}  {label}")
    print(f"\nbench joints: done (load {load()})")
