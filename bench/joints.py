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

STEPS = [("client_send", "accepted", "client send -> connection accepted (aiohttp protocol)"),
         ("accepted", "in", "accepted -> first request bytes in"),
         ("client_send", "in", "= client send (connect, request) -> first bytes in"),
         ("in", "handler", "request bytes in -> handler (aiohttp, middlewares)"),
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
         ("upstream_head", "upstream_data", "upstream: head -> first token read (llama-server)"),
         ("upstream_data", "upstream_event", "relay: read -> event parsed (wake, SSE lines)"),
         ("upstream_event", "prepare", "relay: parsed -> response prepare (engine, chunk)"),
         ("prepare", "first_write", "relay: prepare + first write"),
         ("upstream_data", "first_write", "= relay of the first token"),
         ("in", "first_write", "= request in -> first bytes out"),
         ("first_write", "client_first", "first bytes out -> client has them"),
         ("client_send", "client_first", "= client TTFT (to the first bytes)")]


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

        sent: list[tuple[int, int]] = []  # client (send, first byte), ns, proxied requests

        def ttft(url: str, body: dict, headers: dict) -> float:
            # perf_counter_ns is CLOCK_MONOTONIC: the same clock as the server's marks
            t0 = time.perf_counter_ns()
            first = None
            with c.stream("POST", url, json=body, headers=headers) as r:
                for _ in r.iter_raw():
                    if first is None:
                        first = time.perf_counter_ns()
            assert first is not None
            if url.startswith(ol.url):
                sent.append((t0, first))
            return (first - t0) / 1e6

        for p in paths.values():
            for _ in range(5):
                ttft(*p)
        got: dict[str, list[float]] = {k: [] for k in paths}
        del sent[:]
        for _ in range(n):
            for k in ("/api/generate", "child /completion", "/api/chat", "child /completion"):
                got[k].append(ttft(*paths[k]))
        os.kill(ol.pid, signal.SIGUSR2)
        deadline = time.monotonic() + 10
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.3)
    records = json.loads(out.read_text())[-2 * n:]
    for r, (t0, first) in zip(records, sent[-len(records):], strict=False):
        r["client_send"], r["client_first"] = t0, first
    print(f"\nclient TTFT medians (ms), {n} rounds: " + ", ".join(
        f"{k} {statistics.median(v):.2f}" for k, v in got.items()))
    print(f"\ninside ollamapy, medians over {len(records)} requests (ms):")
    for a, b, label in STEPS:
        xs = [(r[b] - r[a]) / 1e6 for r in records if a in r and b in r]
        if xs:
            print(f"  {statistics.median(xs):7.3f}  {label}")
    print(f"\nbench joints: done (load {load()})")
