"""`python -m bench floor [N]`: the 1-stream TTFT overhead of the least an aiohttp front can
do (bench/floor_proxy.py: read the request, send it on over a connection opened ahead, write
the upstream's bytes back unparsed) next to ollamapy's and the router's, each against its own
child, in N paired interleaved rounds. If the floor alone adds more than the router, no
aiohttp-based supervisor can match the router at 1 stream, whatever it does per request. The
pipe's own joints (medians) are printed after: compare them with `python -m bench joints`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

from bench.__main__ import (
    CTX_PER_SLOT,
    MODEL,
    PROMPT,
    ROOT,
    ROUTER_MODEL,
    Series,
    child_api_key,
    free_port,
    load,
    machine,
    ollamapy_server,
    one_stream,
    rendered_prompt,
    router_server,
    stop,
    wait_http,
)
from ollamapy import options
from ollamapy.inference import sampling

PATHS = {  # key: (label, kind, paired with)
    "direct": ("ollamapy's child /completion (direct)", "direct", ""),
    "generate": ("ollamapy /api/generate", "generate", "direct"),
    "floor": ("bare aiohttp pipe /completion", "direct", "direct"),
    "rdirect": ("router's child /completion (direct)", "direct", ""),
    "rcompletion": ("router /completion", "direct", "rdirect"),
}


async def rounds(urls: dict[str, tuple[str, dict]], auth: dict[str, str], n: int
                 ) -> dict[str, Series]:
    conn = aiohttp.TCPConnector(limit=0, force_close=True)  # a connection per request
    out = {k: Series() for k in urls}
    keys = list(urls)
    async with aiohttp.ClientSession(connector=conn, headers=auth) as s:
        for k in keys:  # warm-up
            for _ in range(3):
                await one_stream(s, *urls[k], PATHS[k][1])
        for i in range(n):
            for j in range(len(keys)):
                k = keys[(i + j) % len(keys)]
                out[k].ttfts.append([(await one_stream(s, *urls[k], PATHS[k][1])).ttft])
    return out


def main(argv: list[str]) -> None:
    n = int(argv[0]) if argv else 200
    print(f"bench floor: {machine()}; load {load()}", flush=True)
    with contextlib.ExitStack() as stack:
        ol = stack.enter_context(ollamapy_server(1))
        prompt = rendered_prompt(ol)
        rt = stack.enter_context(router_server(ol.child_cmd, prompt))
        child = urlsplit(ol.child)
        port = free_port()
        joints_out = Path(tempfile.mkdtemp(prefix="ollamapy-floor-")) / "joints.json"
        proc = subprocess.Popen([sys.executable, "-m", "bench.floor_proxy", str(port),
                                 str(child.hostname), str(child.port), str(joints_out)],
                                cwd=ROOT)
        stack.callback(stop, proc)
        floor = f"http://127.0.0.1:{port}"
        wait_http(floor + "/")
        key = child_api_key(ol.pid)
        auth = {"Authorization": f"Bearer {key}"} if key else {}
        fields = sampling.completion_fields(
            options.merge({}, {"num_predict": 3, "temperature": 0.0}), CTX_PER_SLOT)
        direct = {"prompt": prompt, "stream": True, "cache_prompt": True, **fields}
        urls = {
            "direct": (ol.child + "/completion", direct),
            "generate": (ol.url + "/api/generate", {
                "model": MODEL, "prompt": PROMPT, "stream": True,
                "options": {"num_predict": 3, "temperature": 0}}),
            "floor": (floor + "/completion", direct),
            "rdirect": (rt.child + "/completion", direct),
            "rcompletion": (rt.url + "/completion", {"model": ROUTER_MODEL, **direct}),
        }
        res = asyncio.run(rounds(urls, auth, n))
        os.kill(proc.pid, signal.SIGUSR2)
        deadline = time.monotonic() + 10
        while not joints_out.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.2)
        joints = json.loads(joints_out.read_text()) if joints_out.exists() else {}
    print(f"\n1 stream, {n} paired rounds; TTFT overhead = median over rounds of (proxied - "
          "its own child direct), ms:")
    for k, (label, _kind, paired) in PATHS.items():
        s = res[k]
        if paired:
            d = sorted(s.diffs_ms(res[paired]))
            q = statistics.quantiles(d, n=4)
            print(f"  {label:40s} TTFT {s.ttft_ms():7.2f}  overhead {statistics.median(d):+6.2f}"
                  f"  (IQR {q[2] - q[0]:.2f})")
        else:
            print(f"  {label:40s} TTFT {s.ttft_ms():7.2f}")
    print("\nthe bare pipe's own joints, medians (ms):")
    for label, ms in joints.items():
        print(f"  {ms:7.3f}  {label}" if ms is not None else f"     --    {label}")
    print(f"\nbench floor: done (load {load()})")
