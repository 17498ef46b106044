"""Two real `ollamapy worker`s on loopback, each capped (--mem) so that neither alone can hold
SmolLM2's layers; llama-server loads the model across both with the argv of `plan_split`, greedy
output matches a local run, and a worker killed mid-stream ends the stream (no hang) and is
restarted by its supervisor. llama-server is driven directly: scheduler wiring is phase 2."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from ollamapy.placement import memory
from ollamapy.placement.rpc import WorkerInfo, WorkerSpec, layer_sizes, plan_split, query_worker
from tests.conftest import free_port, need

pytestmark = pytest.mark.e2e

MiB = 1024 * 1024
CTX = 512
BATCH = 64  # small ubatch: a small compute buffer on every device
PROMPT = "The capital of France is"
N_PREDICT = 24
# What each worker may hold: half the model's layers and a little (so neither alone holds them
# all, both together do) plus room for its compute buffer. The worker's RLIMIT_DATA adds 48 MiB
# (options.data_limit) for one in-flight tensor; one worker alone would need ~105 MiB of buffers
# plus the 28.7 MiB output tensor in flight.
SHARE = 0.5
COMPUTE_MIB = 8  # measured: 1.6 MiB compute buffer per RPC device at -ub 64
SLACK_MIB = 4


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


@dataclass
class WorkerProc:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    cache: Path

    @property
    def spec(self) -> WorkerSpec:
        return WorkerSpec("127.0.0.1", self.port)

    def rpc_server_pid(self) -> int | None:
        kids = _children(self.proc.pid)
        return kids[0] if kids else None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def query(spec: WorkerSpec, deadline_s: float = 3.0) -> WorkerInfo:
    return asyncio.run(query_worker(spec, deadline_s=deadline_s))


def wait_up(w: WorkerProc, timeout: float = 60.0) -> WorkerInfo:
    deadline = time.monotonic() + timeout
    info = query(w.spec, 1.0)
    while time.monotonic() < deadline:
        if w.proc.poll() is not None:
            raise AssertionError(f"worker exited {w.proc.returncode}:\n{w.log()}")
        info = query(w.spec, 1.0)
        if info.up:
            return info
        time.sleep(0.2)
    raise AssertionError(f"worker on {w.port} not up ({info.error}):\n{w.log()}")


def start_worker(tmp_path: Path, mem_mib: int, name: str) -> WorkerProc:
    port = free_port()
    log_path = tmp_path / f"{name}.log"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with log_path.open("wb") as logf:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ollamapy.cli.main", "worker", "--port", str(port),
             "--mem", str(mem_mib), "--threads", "1", "--cache", str(tmp_path / "cache")],
            env=env, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
    return WorkerProc(proc, port, log_path, tmp_path / "cache")


def stop_worker(w: WorkerProc) -> None:
    if w.proc.poll() is None:
        w.proc.send_signal(signal.SIGTERM)
        try:
            w.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(w.proc.pid, signal.SIGKILL)
            w.proc.wait()


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_llama(binary: Path, model: Path, extra: list[str], tmp_path: Path, name: str,
                timeout: float = 120.0) -> Server:
    port = free_port()
    log_path = tmp_path / f"{name}.log"
    argv = [str(binary), "-m", str(model), "-c", str(CTX), "-b", str(BATCH), "-ub", str(BATCH),
            "-t", "1", "-np", "1", "--log-verbosity", "4", "--host", "127.0.0.1", "--port",
            str(port), *extra]
    with log_path.open("wb") as logf:
        proc = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT,
                                start_new_session=True)
    s = Server(proc, f"http://127.0.0.1:{port}", log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return s  # the caller decides whether exiting was expected
        try:
            if httpx.get(s.url + "/health", timeout=1).status_code == 200:
                return s
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    stop_llama(s)
    raise AssertionError(f"llama-server did not come up:\n{s.log()[-3000:]}")


def stop_llama(s: Server) -> int:
    if s.proc.poll() is None:
        os.killpg(s.proc.pid, signal.SIGTERM)
        try:
            s.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(s.proc.pid, signal.SIGKILL)
            s.proc.wait()
    return s.proc.returncode


def cause(log: str) -> str:
    """The line that says why llama-server died (before its gdb backtrace)."""
    for ln in log.splitlines():
        if "Remote RPC server crashed" in ln or "failed to allocate" in ln.lower():
            return ln.strip()
    return "?"


def complete(s: Server, n: int = N_PREDICT) -> dict:
    r = httpx.post(s.url + "/completion", timeout=120, json={
        "prompt": PROMPT, "n_predict": n, "temperature": 0, "top_k": 1, "seed": 1,
        "cache_prompt": False})
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(scope="module")
def sizes(model_path: Path) -> list[int]:
    facts = memory.read_facts(model_path)
    kv = memory.kv_cache(facts, CTX, BATCH, 1, "f16")
    return layer_sizes(facts.layer_bytes, kv, facts.output_bytes)


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory, runner_binary: Path,
            sizes: list[int]) -> Iterator[tuple[WorkerProc, WorkerProc]]:
    if not (runner_binary.parent / "ggml-rpc-server").exists():
        need("the cpu runner's ggml-rpc-server", "make runner-test")
    tmp = tmp_path_factory.mktemp("workers")
    mem = int(sum(sizes) * SHARE / MiB) + COMPUTE_MIB + SLACK_MIB
    ws = (start_worker(tmp, mem, "w1"), start_worker(tmp, mem, "w2"))
    try:
        for w in ws:
            wait_up(w)
        yield ws
    finally:
        for w in ws:
            stop_worker(w)
        for w in ws:
            assert w.rpc_server_pid() is None  # reaped with its supervisor


def worker_infos(ws: tuple[WorkerProc, ...], mem: int) -> list[WorkerInfo]:
    out = []
    for w in ws:
        info = wait_up(w)
        out.append(WorkerInfo(WorkerSpec("127.0.0.1", w.port, mem), info.version, info.devices))
    return out


def test_one_capped_worker_cannot_hold_the_model(workers, runner_binary, model_path, sizes,
                                                 tmp_path) -> None:
    w1, _ = workers
    mem = (int(sum(sizes) * SHARE / MiB) + COMPUTE_MIB + SLACK_MIB) * MiB
    [info] = worker_infos((w1,), mem)
    # Placement knows it: the model does not fit on w1 alone.
    from ollamapy.errors import PlacementError
    with pytest.raises(PlacementError, match="requires"):
        plan_split(sizes, [], [info], mode="workers", reserve=COMPUTE_MIB * MiB)
    # And the cap is real: forcing every layer onto w1 fails the load (RLIMIT_DATA on the worker).
    s = start_llama(runner_binary, model_path,
                    ["--rpc", w1.spec.endpoint, "--device", "RPC0", "-ngl", "99", "--fit", "off"],
                    tmp_path, "one-worker")
    try:
        code = s.proc.wait(60)
    finally:
        stop_llama(s)
    assert code != 0, s.log()[-2000:]
    print(f"\none capped worker: llama-server exit {code}: {cause(s.log())}")
    wait_up(w1)  # the worker survives a client's failed load


def test_split_across_two_workers_matches_local(workers, runner_binary, model_path, sizes,
                                                tmp_path) -> None:
    mem = (int(sum(sizes) * SHARE / MiB) + COMPUTE_MIB + SLACK_MIB) * MiB
    plan = plan_split(sizes, [], worker_infos(workers, mem), mode="workers",
                      reserve=COMPUTE_MIB * MiB)
    assert plan.cpu_layers == 0 and len(plan.workers) == 2, plan.describe()
    assert [t.name for t in plan.devices] == ["RPC0", "RPC1"] and min(plan.layers) > 0
    print(f"\nplan: {plan.describe()}  argv: {' '.join(plan.argv())}")

    local = start_llama(runner_binary, model_path, ["--device", "none", "-ngl", "0"], tmp_path,
                        "local")
    try:
        ref = complete(local)
        ref_long = complete(local, 128)
    finally:
        stop_llama(local)
    split = start_llama(runner_binary, model_path, plan.argv(), tmp_path, "split")
    try:
        assert split.proc.poll() is None, split.log()[-3000:]
        # A worker serves one client at a time: while this llama-server holds it, a query is
        # accepted but not answered, and placement must see it as busy (not down).
        held = query(workers[0].spec, 1.0)
        assert held.busy and not held.up, held
        out = complete(split)
        out_long = complete(split, 128)
        log = split.log()
    finally:
        stop_llama(split)
    assert out["content"] == ref["content"] and out["content"].strip()
    assert out["tokens_predicted"] == ref["tokens_predicted"]
    # The layers really live on the workers: a model buffer on each (llama.cpp names a worker's
    # buffer `RPC<device on that worker>[host:port]`).
    bufs = [ln for ln in log.splitlines() if "model buffer size" in ln]
    for w in workers:
        assert any(f"[{w.spec.endpoint}] model buffer" in ln for ln in bufs), bufs
    # The tensor cache is on by default: tensors over 10 MiB were stored for the next load.
    cached = list((workers[0].cache / "rpc").iterdir())
    assert cached, "no tensor cache written"
    print(f"decode tok/s local {ref_long['timings']['predicted_per_second']:.1f} "
          f"split {out_long['timings']['predicted_per_second']:.1f} "
          f"(128 tokens, 1 thread each)")
    print("\n".join(bufs))


def test_worker_killed_mid_stream(workers, runner_binary, model_path, sizes, tmp_path) -> None:
    w2 = workers[1]
    mem = (int(sum(sizes) * SHARE / MiB) + COMPUTE_MIB + SLACK_MIB) * MiB
    plan = plan_split(sizes, [], worker_infos(workers, mem), mode="workers",
                      reserve=COMPUTE_MIB * MiB)
    s = start_llama(runner_binary, model_path, plan.argv(), tmp_path, "kill")
    old_pid = w2.rpc_server_pid()
    assert old_pid is not None
    received = 0
    ended_with = ""
    started = time.monotonic()
    try:
        with httpx.stream("POST", s.url + "/completion", timeout=httpx.Timeout(30.0), json={
                "prompt": PROMPT, "n_predict": 2000, "temperature": 0, "stream": True,
                "ignore_eos": True}) as r:
            try:
                for line in r.iter_lines():
                    if line.startswith("data: "):
                        received += 1
                        if received == 5:
                            os.kill(old_pid, signal.SIGKILL)  # the rpc-server, not its supervisor
                        if json.loads(line[6:]).get("stop"):
                            ended_with = "stop"
                            break
            except (httpx.RemoteProtocolError, httpx.ReadError) as e:
                ended_with = type(e).__name__
        code = s.proc.wait(30)
    finally:
        stop_llama(s)
    elapsed = time.monotonic() - started
    print(f"\nkilled worker after 5 tokens: stream ended by {ended_with or 'EOF'} after "
          f"{received} events, {elapsed:.1f}s; llama-server exit {code}: {cause(s.log())}")
    assert "Remote RPC server crashed" in s.log()
    assert received < 2000 and code != 0  # the runner does not go on as if nothing happened
    # The supervisor restarts the rpc-server, and the worker answers again.
    info = wait_up(w2)
    assert info.up and w2.rpc_server_pid() not in (None, old_pid)
    assert "restarting in" in w2.log()
    assert "exited with status -13" not in w2.log()  # no SIGPIPE death when a client vanishes

    # The next load with w2 gone for good: left out, and since w1 alone cannot hold the model
    # the error names the missing worker (what the scheduler will report).
    stop_worker(w2)
    infos = [WorkerInfo(WorkerSpec("127.0.0.1", w.port, mem), i.version, i.devices, i.error)
             for w, i in ((w, query(w.spec)) for w in workers)]
    assert infos[0].up and not infos[1].up
    from ollamapy.errors import PlacementError
    with pytest.raises(PlacementError) as e:
        plan_split(sizes, [], infos, mode="workers", reserve=COMPUTE_MIB * MiB)
    assert f"RPC worker {w2.spec.endpoint} (" in str(e.value)
    print(f"w2 gone: {e.value}")


# --- through a real `ollamapy serve` ------------------------------------------------------------

SERVE_CTX, SERVE_BATCH = 512, 64
# The model's own PARAMETERs pin it to the workers (RAM here could hold it: "auto" would stay
# local), and keep the runner small and fast on a shared machine.
SPLIT_PARAMS: dict[str, object] = {"num_thread": 1, "num_ctx": SERVE_CTX,
                                   "num_batch": SERVE_BATCH, "placement": "workers"}
COUNT_PROMPT = "Count from 1 to 500, separated by commas: 1, 2, 3, 4,"


def _server_budgets(model_path: Path) -> tuple[int, int]:
    """(worker --mem MiB, OLLAMAPY_RPC_WORKERS @MiB): the cap each worker enforces (neither alone
    holds the model's layers) and the budget the server plans with (the cap plus the compute
    reserve the server's estimate keeps on every device)."""
    from ollamapy.config import load_settings
    from ollamapy.scheduler.policy import RunnerSpec, split_inputs

    facts = memory.read_facts(model_path)
    spec = RunnerSpec(model_path, num_ctx=SERVE_CTX, num_batch=SERVE_BATCH)
    sizes, reserve = split_inputs(facts, spec, load_settings({}))
    cap = int(sum(sizes) * SHARE / MiB) + COMPUTE_MIB + SLACK_MIB
    return cap, cap + reserve // MiB + 1


def _generate(url: str, options: dict[str, object] | None = None, n: int = N_PREDICT) -> dict:
    r = httpx.post(url + "/api/generate", timeout=300, json={
        "model": "smollm2:135m", "prompt": PROMPT, "stream": False, "raw": True,
        "options": {"temperature": 0, "top_k": 1, "seed": 1, "num_predict": n,
                    **(options or {})}})
    return {"status": r.status_code, **r.json()}


def _ps(url: str) -> dict:
    [m] = httpx.get(url + "/api/ps", timeout=10).json()["models"]
    return m


def _kill_worker(w: WorkerProc) -> None:
    """The worker dies for good: its rpc-server first (mid-stream), then its supervisor."""
    pid = w.rpc_server_pid()
    if pid is not None:
        os.kill(pid, signal.SIGKILL)
    stop_worker(w)


def _no_runner_left(server_pid: int) -> None:
    deadline = time.monotonic() + 15
    while _children(server_pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _children(server_pid), "llama-server left running"


def test_server_places_model_over_two_workers(tmp_path, runner_binary, model_path) -> None:
    if not (runner_binary.parent / "ggml-rpc-server").exists():
        need("the cpu runner's ggml-rpc-server", "make runner-test")
    from tests.conftest import running_server

    cap, budget = _server_budgets(model_path)
    ws = (start_worker(tmp_path, cap, "sw1"), start_worker(tmp_path, cap, "sw2"))
    try:
        for w in ws:
            wait_up(w)
        env = {"OLLAMAPY_RPC_WORKERS": ",".join(f"{w.spec.endpoint}@{budget}" for w in ws),
               "OLLAMA_NUM_PARALLEL": "1", "OLLAMA_KEEP_ALIVE": "10m"}
        with running_server(tmp_path / "serve", env, params=SPLIT_PARAMS) as srv:
            try:
                _split_then_kill(srv, ws)
            finally:
                print("\n--- server log (rpc lines) ---")
                print("\n".join(ln for ln in srv.log().splitlines()
                                if "rpc" in ln.lower() or "error" in ln.lower())[-6000:])
            server_pid = srv.proc.pid
        assert srv.proc.poll() is not None
        _no_runner_left(server_pid)
    finally:
        for w in ws:
            stop_worker(w)
    for w in ws:
        assert w.rpc_server_pid() is None  # nothing left running


def _split_then_kill(srv, ws: tuple[WorkerProc, WorkerProc]) -> None:
    w1, w2 = ws
    # 1. the reference: the same model kept local on request (placement local)
    ref = _generate(srv.url, {"placement": "local"})
    assert ref["status"] == 200, ref
    assert "devices" not in _ps(srv.url)  # a local model keeps Ollama's /api/ps shape
    # 2. its own PARAMETER placement=workers: reloaded over both workers, same greedy output
    split = _generate(srv.url)
    assert split["status"] == 200, split
    assert split["response"] == ref["response"] and split["response"].strip()
    assert split["eval_count"] == ref["eval_count"]
    ps = _ps(srv.url)
    on = {d["worker"]: d for d in ps["devices"]}
    assert set(on) == {w1.spec.endpoint, w2.spec.endpoint}, ps
    assert all(d["layers"] > 0 and d["size"] > 0 for d in ps["devices"])
    assert ps["name"] == "smollm2:135m" and ps["size"] > 0 and "expires_at" in ps
    log = srv.log()
    assert "rpc placement" in log and f"--rpc {w1.spec.endpoint},{w2.spec.endpoint}" in log
    shown = subprocess.run([sys.executable, "-m", "ollamapy.cli.main", "ps"], env=dict(
        os.environ, OLLAMA_HOST=srv.host), capture_output=True, text=True, timeout=30)
    assert "RPC(2)" in shown.stdout, shown
    print(f"\n/api/ps devices: {ps['devices']}\nollamapy ps:\n{shown.stdout}")
    tps = {}
    for name, opts in (("split", {}), ("local", {"placement": "local"})):
        r = _generate(srv.url, opts, 128)
        tps[name] = r["eval_count"] / (r["eval_duration"] / 1e9)
    split = _generate(srv.url)  # back on the workers for the kill
    assert split["status"] == 200 and split["response"] == ref["response"]
    print(f"decode tok/s through the server (128 tokens, 1 thread each): local "
          f"{tps['local']:.1f} split {tps['split']:.1f}")

    # 3. kill one worker mid-stream: that request fails with a clear error, no hang
    received, error = 0, ""
    started = time.monotonic()
    with httpx.stream("POST", srv.url + "/api/generate", timeout=httpx.Timeout(60.0), json={
            "model": "smollm2:135m", "prompt": COUNT_PROMPT, "raw": True,
            "options": {"temperature": 0, "num_predict": 2000}}) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if not line.strip():
                continue
            chunk = json.loads(line)
            if "error" in chunk:
                error = chunk["error"]
                break
            received += 1
            if received == 5:
                _kill_worker(w2)
            if chunk.get("done"):
                break
    print(f"killed {w2.spec.endpoint} after 5 chunks: {received} chunks, "
          f"{time.monotonic() - started:.1f}s, error: {error}")
    assert error, f"stream ended without an error after {received} chunks"
    assert "RPC workers" in error and w2.spec.endpoint in error

    # 4. the next request reloads without it: w1 + the CPU, same greedy output
    wait_up(w1)  # its rpc-server is free again once the aborted runner is gone
    again = _generate(srv.url)
    assert again["status"] == 200, again
    assert again["response"] == ref["response"]
    ps = _ps(srv.url)
    assert [d["worker"] for d in ps["devices"] if d["worker"]] == [w1.spec.endpoint], ps
    assert any(d["name"] == "CPU" for d in ps["devices"]), ps
    assert "rpc worker unavailable" in srv.log() and w2.spec.endpoint in srv.log()

    # 5. pinned to the dead worker alone: a clear error naming it
    dead = _generate(srv.url, {"rpc_workers": w2.spec.endpoint})
    assert dead["status"] == 500, dead
    assert f"RPC worker {w2.spec.endpoint} (" in dead["error"], dead
