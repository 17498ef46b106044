"""`python -m bench profile [N] [--against DIR]`: what one request costs the supervisor
process in CPU time, ollamapy next to llama-server's router, and where ollamapy's goes
(cProfile). `--against DIR`: a second ollamapy (the code in DIR, e.g. an exported older
commit) runs alongside and its paths join the same interleaved rounds: a before/after
comparison under the same machine state.

CPU time of the supervisor process per request (psutil, N sequential 3-token streams per
path, no profiler attached) is far less sensitive to a loaded machine than wall-clock TTFT:
it counts only the work the proxy itself does. Then the same N `/api/generate` requests run
under cProfile (bench/profiled_serve.py) and the top functions are printed per request.
"""

from __future__ import annotations

import contextlib
import io
import os
import pstats
import signal
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import psutil

from bench.__main__ import (
    MODEL,
    PROMPT,
    ROUTER_MODEL,
    child_api_key,
    cpu_s,
    load,
    machine,
    ollamapy_server,
    rendered_prompt,
    router_server,
)

ROUNDS = 5


def drive(client: httpx.Client, url: str, body: dict, n: int) -> None:
    for _ in range(n):
        with client.stream("POST", url, json=body) as r:
            if r.status_code != 200:
                raise SystemExit(f"bench: {url} answered {r.status_code}: {r.read()!r}")
            for _ in r.iter_raw():
                pass


def main(argv: list[str]) -> None:
    against: Path | None = None
    if "--against" in argv:
        i = argv.index("--against")
        against = Path(argv[i + 1]).resolve()
        argv = argv[:i] + argv[i + 2:]
    n = int(argv[0]) if argv else 400
    out = Path(tempfile.mkdtemp(prefix="ollamapy-prof-")) / "generate.prof"
    msgs = [{"role": "user", "content": PROMPT}]
    opts = {"num_predict": 3, "temperature": 0}
    oa = {"messages": msgs, "stream": True, "max_tokens": 3, "temperature": 0}
    print(f"bench profile: {machine()}; load {load()}", flush=True)
    with contextlib.ExitStack() as stack:
        ol = stack.enter_context(ollamapy_server(
            1, module="bench.profiled_serve", extra_env={"BENCH_PROFILE_OUT": str(out)}))
        rt = stack.enter_context(router_server(ol.child_cmd, rendered_prompt(ol)))
        old = stack.enter_context(ollamapy_server(1, root=against)) if against else None
        c = stack.enter_context(httpx.Client(
            timeout=60, limits=httpx.Limits(max_keepalive_connections=0)))
        key = child_api_key(ol.pid)  # ollamapy's runners are private: per-runner key
        auth = {"Authorization": f"Bearer {key}"} if key else {}
        with httpx.Client(base_url=ol.child, headers=auth) as cc:
            prompt = cc.post("/apply-template", json={
                "messages": msgs, "add_generation_prompt": True}).json()["prompt"]
        direct = {"prompt": prompt, "stream": True, "n_predict": 3, "temperature": 0,
                  "cache_prompt": True}
        paths = {
            "ollamapy /api/generate": (ol.pid, ol.url + "/api/generate", {
                "model": MODEL, "prompt": PROMPT, "stream": True, "options": opts}),
            "ollamapy /api/chat": (ol.pid, ol.url + "/api/chat", {
                "model": MODEL, "messages": msgs, "stream": True, "options": opts}),
            "ollamapy /v1/chat/completions": (ol.pid, ol.url + "/v1/chat/completions",
                                              {"model": MODEL, **oa}),
            "router /completion": (rt.pid, rt.url + "/completion",
                                   {"model": ROUTER_MODEL, **direct}),
            "router /v1/chat/completions": (rt.pid, rt.url + "/v1/chat/completions",
                                            {"model": ROUTER_MODEL, **oa}),
        }
        if old is not None:
            for k in [k for k in paths if k.startswith("ollamapy")]:
                pid, url, body = paths[k]
                paths[k.replace("ollamapy", "--against")] = (
                    old.pid, url.replace(ol.url, old.url), body)
        for _, url, body in paths.values():
            drive(c, url, body, 5)  # warm-up
        per: dict[str, list[float]] = {k: [] for k in paths}
        sys_ms: dict[str, float] = dict.fromkeys(paths, 0.0)  # kernel part, summed
        per_round = max(1, n // ROUNDS)
        for i in range(ROUNDS):  # interleaved rounds; median of the per-round means
            keys = list(paths)
            for k in keys[i % len(keys):] + keys[:i % len(keys)]:
                pid, url, body = paths[k]
                c0 = cpu_s(pid)
                s0 = psutil.Process(pid).cpu_times().system
                drive(c, url, body, per_round)
                per[k].append((cpu_s(pid) - c0) / per_round * 1000)
                sys_ms[k] += (psutil.Process(pid).cpu_times().system - s0) / per_round * 1000
        print(f"\nSupervisor-process CPU per request (ms; {ROUNDS} rounds of {per_round} "
              "sequential 3-token streams, median [min-max] of the round means):")
        for k, v in per.items():
            print(f"  {k:32s} {statistics.median(v):6.3f}  [{min(v):.3f}-{max(v):.3f}]"
                  f"  of it in the kernel: {sys_ms[k] / ROUNDS:.3f} (mean)")
        _, url, body = paths["ollamapy /api/generate"]
        os.kill(ol.pid, signal.SIGUSR1)
        time.sleep(0.2)
        drive(c, url, body, n)
        os.kill(ol.pid, signal.SIGUSR2)
        deadline = time.monotonic() + 20
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
    buf = io.StringIO()
    st = pstats.Stats(str(out), stream=buf)
    st.sort_stats("tottime").print_stats(30)
    print(f"\ncProfile, {n} x /api/generate (3 tokens), sorted by own time "
          f"(divide by {n} for per request):")
    print("\n".join(ln for ln in buf.getvalue().splitlines()[6:] if ln.strip()))
    buf = io.StringIO()
    st.stream = buf
    st.sort_stats("cumulative").print_stats(40)
    print("\nsorted by cumulative time:")
    print("\n".join(ln for ln in buf.getvalue().splitlines()[6:] if ln.strip()))
    print(f"\nbench profile: done (load {load()})")
