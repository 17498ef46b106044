"""`python -m bench` (`make bench`): what ollamapy costs on top of llama-server, next to what
llama-server's own router (`llama-server --models-dir DIR`, the same binary as a supervisor)
costs on top of its child.

For 1, 8 and 16 concurrent streams (OLLAMA_NUM_PARALLEL / `-np` set to match) a real
`ollamapy serve` loads SmolLM2, and a router with the same GGUF and the same runner flags loads
it too. Both stay up side by side and are driven in interleaved rounds (rotating order):
ollamapy's child directly (`/completion`), `/api/generate`, `/api/chat`,
`/v1/chat/completions`; the router's child directly, the router's `/completion` and its
`/v1/chat/completions`. Each proxied round is paired with its own supervisor's direct round:
TTFT overhead = median over rounds of (proxied round median - direct round median), with the
IQR of those differences; decode ratio likewise. Cold start = request to first token on a
fresh server with nothing loaded (both supervisors spawn their child on that request).
Separately, the relay's own capacity: events/s the proxy forwards from a fake upstream that
streams as fast as it can (proxy pinned to one core). Prints a table and writes
bench/RESULTS.md. `python -m bench relay`: only the relay numbers.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import httpx
import psutil

from bench import stats
from ollamapy import default_model, options, pins
from ollamapy.inference import sampling

ROOT = Path(__file__).resolve().parent.parent
BASE_MODEL = "smollm2:135m"
MODEL = "smollm2-bench:135m"
ROUTER_MODEL = "smollm2"
THREADS = max(1, (os.cpu_count() or 2) - 1)
PROMPT = "Write a story about a robot who learns to paint."
TOKENS = 24
CTX_PER_SLOT = 512
STREAMS = (1, 8, 16)
TTFT_REPS = {1: 60, 8: 16, 16: 12}  # rounds of short requests (time to first token)
REPS = {1: 16, 8: 8, 16: 6}        # rounds of long requests (decode rate)
RELAY_EVENTS = 80_000  # ~0.5 s of proxy CPU (psutil counts 10 ms ticks); the fake caps at 81,920
RELAY_CPU: list[float] = []  # events per CPU-second of the proxy, per relay run
# The runner flags that matter for speed, copied from ollamapy's child to the router's.
COPY_FLAGS = {"-t": 1, "-tb": 1, "-c": 1, "-np": 1, "-b": 1, "-ub": 1, "--no-warmup": 0,
              "--context-shift": 0, "--jinja": 0, "--flash-attn": 1, "-fa": 1}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise SystemExit(f"bench: {url} did not come up")


def child_runner(pid: int) -> tuple[str, list[str]]:
    """The llama-server child of process `pid` -> (its url, its command line)."""
    for child in psutil.Process(pid).children(recursive=True):
        cmd = child.cmdline()
        if cmd and "llama-server" in Path(cmd[0]).name and "--port" in cmd:
            return f"http://127.0.0.1:{cmd[cmd.index('--port') + 1]}", cmd
    raise SystemExit("bench: could not find the llama-server child")


def child_api_key(pid: int) -> str:
    """The per-runner key (LLAMA_API_KEY) of the llama-server child of `pid`, or ""."""
    for child in psutil.Process(pid).children(recursive=True):
        cmd = child.cmdline()
        if cmd and "llama-server" in Path(cmd[0]).name:
            return str(child.environ().get("LLAMA_API_KEY", ""))
    return ""


def cold_ttft(url: str, body: dict) -> float:
    """Request -> first streamed byte of a token event on a server with nothing loaded."""
    t0 = time.perf_counter()
    with httpx.stream("POST", url, json=body, timeout=120) as r:
        if r.status_code != 200:
            raise SystemExit(f"bench: {url} answered {r.status_code}: {r.read()!r}")
        dt = 0.0
        for line in r.iter_lines():
            if line.strip() and not dt:
                dt = time.perf_counter() - t0
    if not dt:
        raise SystemExit(f"bench: {url} sent nothing")
    return dt


def rendered_prompt(sup: Supervisor) -> str:
    """PROMPT as one user message in the model's chat template, rendered by ollamapy's child:
    what `/api/generate` sends it."""
    key = child_api_key(sup.pid)
    r = httpx.post(sup.child + "/apply-template", timeout=30,
                   headers={"Authorization": f"Bearer {key}"} if key else {},
                   json={"messages": [{"role": "user", "content": PROMPT}],
                         "add_generation_prompt": True})
    r.raise_for_status()
    return str(r.json()["prompt"])


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class Supervisor:
    url: str
    child: str
    cold_s: float
    child_cmd: list[str]
    pid: int


@contextmanager
def ollamapy_server(parallel: int, module: str = "ollamapy.cli.main",
                    extra_env: dict[str, str] | None = None,
                    root: Path = ROOT) -> Iterator[Supervisor]:
    """A real `ollamapy serve` (the code under `root`); its first request (timed: cold
    start) loads SmolLM2."""
    from ollamapy.store.register import register_gguf

    tmp = Path(tempfile.mkdtemp(prefix="ollamapy-bench-"))
    src = default_model.ensure() if hasattr(default_model, "ensure") else default_model.model_path()
    register_gguf(tmp / "models", Path(src), BASE_MODEL,
                  digest="sha256:" + pins.default_model().gguf_sha256)
    port = free_port()
    env = {**os.environ, "OLLAMA_HOST": f"127.0.0.1:{port}", "OLLAMA_MODELS": str(tmp / "models"),
           "HOME": str(tmp), "OLLAMA_NUM_PARALLEL": str(parallel),
           "OLLAMA_CONTEXT_LENGTH": str(CTX_PER_SLOT), "OLLAMA_KEEP_ALIVE": "10m",
           "OLLAMAPY_CACHE": str(default_model.cache_dir()),
           "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
           **(extra_env or {})}
    (tmp / "home").mkdir(exist_ok=True)
    log = (tmp / "server.log").open("wb")
    # cwd = root: `python -m` puts the working directory first on sys.path
    proc = subprocess.Popen([sys.executable, "-m", module, "serve"], env=env, cwd=root,
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/")
        # The runner gets one core fewer than the machine has (PARAMETER num_thread), so the
        # client and the proxies do not preempt its compute threads.
        r = httpx.post(url + "/api/create", json={
            "model": MODEL, "from": BASE_MODEL, "parameters": {"num_thread": THREADS},
            "stream": False}, timeout=120)
        r.raise_for_status()
        cold = cold_ttft(url + "/api/generate", {
            "model": MODEL, "prompt": PROMPT, "stream": True,
            "options": {"num_predict": 1, "temperature": 0}})
        child, cmd = child_runner(proc.pid)
        yield Supervisor(url, child, cold, cmd, proc.pid)
    except BaseException:
        tail = (tmp / "server.log").read_text(errors="replace").splitlines()[-40:]
        print("bench: ollamapy server log (last lines):\n" + "\n".join(tail), file=sys.stderr)
        raise
    finally:
        stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def router_server(ollamapy_child: list[str], prompt: str) -> Iterator[Supervisor]:
    """`llama-server --models-dir DIR` (router mode), its child started with the speed flags of
    ollamapy's child; its first request (timed: cold start) spawns the child. `prompt`: what
    ollamapy's cold request sent its child (the model's template around PROMPT), so both cold
    starts evaluate the same tokens."""
    binary = ollamapy_child[0]
    flags: list[str] = []
    i = 1
    while i < len(ollamapy_child):
        a = ollamapy_child[i]
        n = COPY_FLAGS.get(a)
        if n is not None:
            flags += ollamapy_child[i:i + 1 + n]
            i += 1 + n
        else:
            i += 1
    tmp = Path(tempfile.mkdtemp(prefix="ollamapy-bench-router-"))
    (tmp / "models").mkdir()
    (tmp / "models" / f"{ROUTER_MODEL}.gguf").symlink_to(default_model.model_path())
    port = free_port()
    log = (tmp / "router.log").open("wb")
    proc = subprocess.Popen([binary, "--models-dir", str(tmp / "models"), "--host", "127.0.0.1",
                             "--port", str(port), "--no-ui", "--offline", *flags],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/health")
        cold = cold_ttft(url + "/completion", {
            "model": ROUTER_MODEL, "prompt": prompt, "stream": True, "n_predict": 1,
            "temperature": 0})
        child, cmd = child_runner(proc.pid)
        yield Supervisor(url, child, cold, cmd, proc.pid)
    finally:
        stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


@dataclass
class Sample:
    ttft: float
    decode_tps: float


@dataclass(frozen=True)
class Path_:
    key: str
    label: str
    kind: str       # how its stream says "a token": direct | generate | chat | openai
    paired: str     # the direct path its rounds are paired with ("" for a direct path)


PATHS = (
    Path_("direct", "ollamapy's child /completion (direct)", "direct", ""),
    Path_("generate", "ollamapy /api/generate", "generate", "direct"),
    Path_("chat", "ollamapy /api/chat", "chat", "direct"),
    Path_("openai", "ollamapy /v1/chat/completions", "openai", "direct"),
    Path_("rdirect", "router's child /completion (direct)", "direct", ""),
    Path_("rcompletion", "router /completion", "direct", "rdirect"),
    Path_("ropenai", "router /v1/chat/completions", "openai", "rdirect"),
)


@dataclass
class Series:
    """One path's samples, kept per round so each proxied round can be paired with the direct
    round run right next to it (paired differences cancel the load drift of a shared
    machine; a difference of two overall medians does not)."""

    ttfts: list[list[float]] = field(default_factory=list)   # seconds, per round
    rates: list[list[float]] = field(default_factory=list)   # tokens/s per stream, per round
    cpu_s: float = 0.0  # CPU time of its supervisor process during its TTFT rounds
    requests: int = 0   # requests in its TTFT rounds

    def cpu_ms(self) -> float:
        """Supervisor CPU per request: what the proxy itself does, which a loaded machine
        distorts far less than wall-clock time (for a direct path: the supervisor reading
        its child's log lines)."""
        return self.cpu_s / self.requests * 1000 if self.requests else float("nan")

    def ttft_ms(self) -> float:
        return statistics.median(x for r in self.ttfts for x in r) * 1000

    def tps(self) -> float:
        return statistics.median(x for r in self.rates for x in r)

    def diffs_ms(self, direct: Series) -> list[float]:
        return [(statistics.median(a) - statistics.median(b)) * 1000
                for a, b in zip(self.ttfts, direct.ttfts, strict=True)]

    def ttft_overhead_ms(self, direct: Series) -> float:
        """Median over rounds of (this round's median TTFT - the paired direct round's)."""
        return statistics.median(self.diffs_ms(direct))

    def iqr_ms(self, direct: Series) -> float:
        """Spread (interquartile range) of the per-round paired differences: the noise."""
        d = sorted(self.diffs_ms(direct))
        if len(d) < 4:
            return float("nan")
        q = statistics.quantiles(d, n=4)
        return q[2] - q[0]

    def tps_ratios(self, direct: Series) -> list[float]:
        """Per round: this round's median rate / the paired direct round's."""
        return [statistics.median(a) / statistics.median(b)
                for a, b in zip(self.rates, direct.rates, strict=True)
                if statistics.median(b) > 0]

    def tps_ratio(self, direct: Series) -> float:
        """Median over rounds of this round's median rate / the paired direct round's."""
        return statistics.median(self.tps_ratios(direct))


def _token_event(obj: dict, kind: str) -> bool:
    """Does this streamed object carry generated text (not the final/usage object)?"""
    if kind == "direct":
        return not obj.get("stop") and bool(obj.get("tokens"))
    if kind == "generate":
        return not obj.get("done") and bool(obj.get("response"))
    if kind == "chat":
        return not obj.get("done") and bool((obj.get("message") or {}).get("content"))
    choices = obj.get("choices") or []
    return bool(choices) and bool((choices[0].get("delta") or {}).get("content"))


async def one_stream(session: aiohttp.ClientSession, url: str, body: dict,
                     kind: str) -> Sample:
    """TTFT = send -> first token event; decode = token events after the first / time from
    the first to the last token event (the final metrics object is not a token)."""
    t0 = time.perf_counter()
    stamps: list[float] = []
    buf = b""
    async with session.post(url, json=body) as resp:
        if resp.status != 200:
            raise SystemExit(f"bench: {url} answered {resp.status}: {await resp.text()}")
        async for chunk in resp.content.iter_any():
            now = time.perf_counter()
            buf += chunk
            lines = buf.split(b"\n")
            buf = lines.pop()
            for line in lines:
                line = line.strip()
                if not line or line == b"data: [DONE]" or not line.startswith((b"{", b"data: ")):
                    continue
                obj = json.loads(line[6:] if line.startswith(b"data: ") else line)
                if _token_event(obj, kind):
                    stamps.append(now)
    if not stamps:
        raise SystemExit(f"bench: {url} streamed no tokens")
    span = stamps[-1] - stamps[0]
    return Sample(stamps[0] - t0, (len(stamps) - 1) / span if span > 0 else 0.0)


async def measure(ol: Supervisor, rt: Supervisor, n: int) -> dict[str, Series]:
    msgs = [{"role": "user", "content": PROMPT}]
    # One connection per request on every path: llama-server closes the connection after a
    # streamed response, so a pooled client would hand the direct path dead sockets while
    # the proxied path reused warm ones -- same client policy for all paths.
    conn = aiohttp.TCPConnector(limit=0, force_close=True)
    # ollamapy's runners refuse requests without their per-runner key (read from the child's
    # environment, as only its own user can); the router and its child ignore the header.
    key = child_api_key(ol.pid)
    auth = {"Authorization": f"Bearer {key}"} if key else {}
    prompt = rendered_prompt(ol)
    async with aiohttp.ClientSession(connector=conn, headers=auth) as s:

        def targets(tokens: int) -> dict[str, tuple[str, dict]]:
            fields = sampling.completion_fields(
                options.merge({}, {"num_predict": tokens, "temperature": 0.0}), CTX_PER_SLOT)
            direct = {"prompt": prompt, "stream": True, "cache_prompt": True, **fields}
            ollama_opts = {"num_predict": tokens, "temperature": 0}
            oa = {"messages": msgs, "stream": True, "max_tokens": tokens, "temperature": 0,
                  "stream_options": {"include_usage": True}}
            return {
                "direct": (ol.child + "/completion", direct),
                "generate": (ol.url + "/api/generate", {
                    "model": MODEL, "prompt": PROMPT, "stream": True, "options": ollama_opts}),
                "chat": (ol.url + "/api/chat", {
                    "model": MODEL, "messages": msgs, "stream": True, "options": ollama_opts}),
                "openai": (ol.url + "/v1/chat/completions", {"model": MODEL, **oa}),
                "rdirect": (rt.child + "/completion", direct),
                "rcompletion": (rt.url + "/completion", {"model": ROUTER_MODEL, **direct}),
                "ropenai": (rt.url + "/v1/chat/completions", {"model": ROUTER_MODEL, **oa}),
            }

        kinds = {p.key: p.kind for p in PATHS}

        async def wave(k: str, t: dict[str, tuple[str, dict]]) -> list[Sample]:
            u, b = t[k]
            return list(await asyncio.gather(*(one_stream(s, u, b, kinds[k])
                                               for _ in range(n))))

        keys = [p.key for p in PATHS]

        def order(i: int) -> list[str]:
            return [keys[(i + j) % len(keys)] for j in range(len(keys))]  # no position bias

        out = {k: Series() for k in keys}
        short, long = targets(3), targets(TOKENS)
        for k in keys:  # warm-up: prompt cache, skeletons
            await wave(k, long)
        pids = {p.key: (rt.pid if p.key.startswith("r") else ol.pid) for p in PATHS}
        for i in range(TTFT_REPS[n]):  # many short requests, interleaved: time to first token
            for k in order(i):
                c0 = cpu_s(pids[k])
                out[k].ttfts.append([x.ttft for x in await wave(k, short)])
                out[k].cpu_s += cpu_s(pids[k]) - c0
                out[k].requests += n
        for i in range(REPS[n]):  # fewer long ones, interleaved: decode speed
            for k in order(i):
                out[k].rates.append([x.decode_tps for x in await wave(k, long)])
    return out


def cpu_s(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def _ttfb(client: httpx.Client, url: str, body: dict) -> float:
    t0 = time.perf_counter()
    with client.stream("POST", url, json=body) as r:
        for _ in r.iter_raw():
            return time.perf_counter() - t0
    raise SystemExit(f"bench: {url} sent nothing")


def relay_capacity() -> tuple[float, float]:
    """(events/s the proxy forwards, its added time to first event in ms), proxy process
    pinned to one core, against a fake upstream (no model noise)."""
    up_port, px_port = free_port(), free_port()
    py = [sys.executable, "-m", "bench.fake_upstream"]
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    procs = [subprocess.Popen([*py, "upstream", str(up_port), str(RELAY_EVENTS)], cwd=ROOT),
             subprocess.Popen([*py, "proxy", str(px_port), f"http://127.0.0.1:{up_port}"],
                              cwd=ROOT)]
    try:
        if len(cpus) >= 2:
            os.sched_setaffinity(procs[1].pid, {cpus[0]})
            os.sched_setaffinity(procs[0].pid, {cpus[1]})
        wait_http(f"http://127.0.0.1:{up_port}/")
        wait_http(f"http://127.0.0.1:{px_port}/")
        body = {"model": "fake:latest", "prompt": "x", "raw": True, "stream": True,
                "options": {"num_predict": RELAY_EVENTS}}
        probe = {"n_predict": 2, "prompt": "x", "stream": True}
        pbody = {**body, "options": {"num_predict": 2}}
        direct, proxied = [], []
        with httpx.Client(timeout=30) as c:
            for _ in range(200):
                direct.append(_ttfb(c, f"http://127.0.0.1:{up_port}/completion", probe))
                proxied.append(_ttfb(c, f"http://127.0.0.1:{px_port}/api/generate", pbody))
        overhead_ms = (statistics.median(proxied) - statistics.median(direct)) * 1000
        best = 0.0
        proxy = psutil.Process(procs[1].pid)
        for _ in range(3):
            cpu0 = sum(proxy.cpu_times()[:2])
            t0 = time.perf_counter()
            lines = 0
            with httpx.stream("POST", f"http://127.0.0.1:{px_port}/api/generate", json=body,
                              timeout=120) as r:
                for chunk in r.iter_raw():
                    lines += chunk.count(b"\n")
            dt = time.perf_counter() - t0
            if lines < RELAY_EVENTS:
                raise SystemExit(f"bench: relay delivered {lines} of {RELAY_EVENTS} events")
            best = max(best, lines / dt)
            RELAY_CPU.append(lines / max(sum(proxy.cpu_times()[:2]) - cpu0, 1e-9))
        return best, overhead_ms
    finally:
        for p in procs:
            p.terminate()
            p.wait()


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = psutil.virtual_memory().total / 2**30
    return (f"{cpu}, {os.cpu_count()} logical CPUs, {mem:.0f} GiB RAM, "
            f"{platform.system()} {platform.release()}, Python {platform.python_version()}, "
            f"llama.cpp {pins.llama_cpp().short_commit}")


def load() -> str:
    a, b, c = os.getloadavg()
    return f"{a:.1f} / {b:.1f} / {c:.1f}"


@dataclass
class Run:
    results: dict[int, dict[str, Series]]
    cold: dict[int, tuple[float, float]]  # streams -> (ollamapy s, router s)


OURS = ("generate", "chat", "openai")


def _overall(decisions: list[str]) -> str:
    if "NOT met" in decisions:
        return "NOT met"
    return "met" if all(d == "met" for d in decisions) else "not resolved"


def verdict(run: Run, relay_cpu: float) -> list[str]:
    """The issue's targets, checked against this run: each from a 95 % bootstrap interval over
    the paired rounds (bench/stats.py), so noise reads as "not resolved", not as a verdict."""
    lines = []
    for n, res in run.results.items():
        router_d = res["rcompletion"].diffs_ms(res["rdirect"])
        router = statistics.median(router_d)
        parts, decisions = [], []
        for k in OURS:
            rounds = list(zip(res[k].diffs_ms(res["direct"]), router_d, strict=True))
            lo, hi = stats.bootstrap_ci(rounds, stats.median_gap)
            decisions.append(stats.decide(lo, hi, 0.0, below=True))
            parts.append(f"{k} {stats.median_gap(rounds):+.2f} [{lo:+.2f}, {hi:+.2f}]")
        worst = max(res[k].ttft_overhead_ms(res["direct"]) for k in OURS)
        lines.append(f"- {n} stream(s): worst ollamapy TTFT overhead {worst:+.2f} ms vs the "
                     f"router's /completion {router:+.2f} ms; ollamapy minus router, median "
                     f"[95 % interval] over {len(router_d)} rounds: {'; '.join(parts)} ms -> "
                     f"{_overall(decisions)}")
    for n, res in run.results.items():
        worst_cpu = max(res[k].cpu_ms() for k in OURS)
        lines.append(f"- {n} stream(s), supervisor CPU per request: ollamapy worst "
                     f"{worst_cpu:.2f} ms vs the router's /completion "
                     f"{res['rcompletion'].cpu_ms():.2f} ms (not a goal of its own; the "
                     "load-robust view of the proxy's cost)")
    rows, decisions = [], []
    for n, res in run.results.items():
        for k in OURS:
            ratios = res[k].tps_ratios(res["direct"])
            lo, hi = stats.bootstrap_ci(ratios, stats.median_of)
            d = stats.decide(lo, hi, 0.99, below=False)
            decisions.append(d)
            rows.append((statistics.median(ratios), f"{n}-stream {k} "
                         f"{statistics.median(ratios):.3f} [{lo:.3f}, {hi:.3f}]", d))
    worst_tps = min(r[0] for r in rows)
    shown = [label for _, label, d in sorted(rows) if d != "met"] or [min(rows)[1]]
    lines.append(f"- decode >= 0.99x direct: worst {worst_tps:.3f}x; rows not shown met, median "
                 f"[95 % interval]: {'; '.join(shown)} -> {_overall(decisions)}")
    lines.append(f"- relay >= 150,000 events per proxy CPU-second: {relay_cpu:,.0f} -> "
                 f"{'met' if relay_cpu >= 150_000 else 'NOT met'}")
    return lines


def table(run: Run, relay: float, relay_cpu: float, relay_ttft: float) -> str:
    rows = ["| streams | path | TTFT median (ms) | TTFT overhead vs own child (ms) | "
            "overhead IQR (ms) | supervisor CPU/request (ms) | decode tok/s/stream | "
            "decode vs own child |",
            "|---|---|---|---|---|---|---|---|"]
    for n, res in run.results.items():
        for p in PATHS:
            s = res[p.key]
            if p.paired:
                d = res[p.paired]
                over = f"{s.ttft_overhead_ms(d):+.2f}"
                iqr = f"{s.iqr_ms(d):.2f}"
                ratio = f"{s.tps_ratio(d):.3f}"
            else:
                over, iqr, ratio = "—", "—", "1.000"
            rows.append(f"| {n} | {p.label} | {s.ttft_ms():.1f} | {over} | {iqr} | "
                        f"{s.cpu_ms():.2f} | {s.tps():.1f} | {ratio} |")
    rows.append("")
    cold = "; ".join(f"{n} slot(s): ollamapy {o:.3f} s, router {r:.3f} s"
                     for n, (o, r) in run.cold.items())
    rows.append(f"Cold start (request -> first token on a fresh server, nothing loaded): {cold}.")
    rows.append("")
    rows.append(f"Relay (fake upstream that streams as fast as it can, proxy pinned to one "
                f"core): **{relay:,.0f} events/s** wall, **{relay_cpu:,.0f} events per proxy "
                f"CPU-second**; added time to first event through `/api/generate` (raw): "
                f"**{relay_ttft:+.2f} ms** (median of 200).")
    return "\n".join(rows)


def relay_only() -> None:
    """`python -m bench relay`: just the relay capacity (seconds, no model), with events per
    CPU-second of the proxy process, which a loaded shared machine distorts less."""
    relay, relay_ttft = relay_capacity()
    print(f"bench: relay {relay:,.0f} events/s wall, {max(RELAY_CPU):,.0f} events/CPU-s, "
          f"+{relay_ttft:.2f} ms to first event (load {load()})")


def main() -> None:
    if sys.argv[1:] == ["relay"]:
        relay_only()
        return
    if sys.argv[1:2] == ["joints"]:
        from bench.joints import main as joints_main

        joints_main(sys.argv[2:])
        return
    if sys.argv[1:2] == ["floor"]:
        from bench.floor import main as floor_main

        floor_main(sys.argv[2:])
        return
    if sys.argv[1:2] == ["profile"]:
        from bench.profile import main as profile_main

        profile_main(sys.argv[2:])
        return
    started = time.monotonic()
    load0 = load()
    print(f"bench: {machine()}; load {load0}", flush=True)
    print("bench: relay capacity ...", flush=True)
    relay, relay_ttft = relay_capacity()
    relay_cpu = max(RELAY_CPU)
    print(f"bench: relay {relay:,.0f} events/s, {relay_cpu:,.0f} events/CPU-s, "
          f"+{relay_ttft:.2f} ms to first event", flush=True)
    run = Run({}, {})
    for n in STREAMS:
        print(f"bench: {n} concurrent stream(s) ... (load {load()})", flush=True)
        with ollamapy_server(n) as ol, router_server(ol.child_cmd, rendered_prompt(ol)) as rt:
            run.cold[n] = (ol.cold_s, rt.cold_s)
            run.results[n] = asyncio.run(measure(ol, rt, n))
    text = (table(run, relay, relay_cpu, relay_ttft) + "\n\nTargets (issue 12):\n"
            + "\n".join(verdict(run, relay_cpu)))
    print(text)
    took = time.monotonic() - started
    md = ["# ollamapy benchmark", "",
          f"Latest `make bench` run ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"{took:.0f} s).", "", f"Machine: {machine()}; load average (1/5/15 min) "
          f"{load0} at the start, {load()} at the end.", "",
          f"Model SmolLM2-135M-Instruct Q4_1; every llama-server (ollamapy's child, the "
          f"router's child) runs with {THREADS} thread(s) and the same speed flags, "
          f"prompt {PROMPT!r}, {TOKENS} tokens per stream (3 for TTFT rounds), greedy, "
          f"{CTX_PER_SLOT}-token context per slot, slots = streams. TTFT = request sent -> "
          "first token event; decode tok/s = token events after the first / (last token "
          "event - first token event). All paths run in rounds, in rotating order; TTFT "
          "overhead (and its IQR) and decode ratio are over rounds of the difference / ratio "
          "between a proxied round and its own supervisor's direct round (paired, so load "
          "drift on the shared machine cancels). Supervisor CPU/request = CPU time (user + "
          "system) of the supervisor process (ollamapy serve / the router) during a path's "
          "TTFT rounds over their requests: the proxy's own work, which load distorts far "
          "less than wall time (direct paths: the supervisor reading its child's log). Every "
          "client request opens its own connection. "
          f"Rounds: TTFT {TTFT_REPS}, decode {REPS} (streams: rounds).", "",
          text, ""]
    out = Path(os.environ.get("BENCH_OUT", ROOT / "bench" / "LATEST.md"))
    out.write_text("\n".join(md))
    print(f"bench: wrote {out} ({took:.0f} s)")


if __name__ == "__main__":
    main()
