"""RPC workers in the scheduler: the pure decisions (policy) over mixed inventories, the argv they
produce, and the actor's load path against in-process fake rpc-servers (no processes)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ollamapy.cli.ps import rows
from ollamapy.config import load_settings
from ollamapy.errors import BadRequest, PlacementError
from ollamapy.placement.gpu import GiB, GpuDevice, Inventory, SystemInfo
from ollamapy.placement.memory import ModelFacts, place
from ollamapy.placement.rpc import RpcDevice, WorkerInfo, WorkerSpec
from ollamapy.runner.flags import build_args
from ollamapy.scheduler import Scheduler
from ollamapy.scheduler.core import runner_failure_message
from ollamapy.scheduler.policy import (
    estimate_options,
    launch_config,
    needs_reload,
    resolve_spec,
    split_inputs,
    split_plan,
    unavailable,
    wants_workers,
)
from ollamapy.server.routes.scheduler import ps_body
from tests.unit.test_placement_rpc import rpc_handler, silent
from tests.unit.test_scheduler import FakeLauncher, model, settle

pytestmark = pytest.mark.timeout(30)

MiB = 1024 * 1024
LAYER = 100 * MiB
# 30 blocks of 100 MiB + a 150 MiB output layer; a tiny KV/graph so the numbers stay readable
FACTS = ModelFacts(architecture="llama", block_count=30, context_length=8192,
                   embedding_length=64, head_count=2, head_count_kv=(1,) * 30, key_length=8,
                   value_length=8, vocab_size=256, layer_bytes=(LAYER,) * 30,
                   output_bytes=150 * MiB)
PATH = Path("/models/big")


def inv(ram_free: int, *gpu_free: int) -> Inventory:
    gpus = tuple(GpuDevice(index=i, id=f"GPU-{i}", library="cuda", name="t", total=f, free=f)
                 for i, f in enumerate(gpu_free))
    return Inventory(SystemInfo(total=64 * GiB, free=ram_free, cores=4, threads=8), gpus)


def worker(port: int, free: int, mem: int = 0, error: str = "") -> WorkerInfo:
    spec = WorkerSpec("10.0.0.9", port, mem)
    if error:
        return WorkerInfo(spec, error=error)
    return WorkerInfo(spec, (7, 0, 0), (RpcDevice(0, free, free),))


def spec_for(env: dict[str, str], options: dict[str, Any], inventory: Inventory):
    s = load_settings(env)
    return s, resolve_spec(PATH, {"num_ctx": 512, **options}, settings=s, inventory=inventory,
                           facts=FACTS)


TWO = {"OLLAMAPY_RPC_WORKERS": "10.0.0.9:1,10.0.0.9:2"}


def test_spec_carries_placement_and_validates_it() -> None:
    i = inv(48 * GiB)
    _, auto = spec_for(TWO, {}, i)
    assert auto.placement == "auto" and [w.port for w in auto.rpc_workers] == [1, 2]
    _, local = spec_for(TWO, {"placement": "local"}, i)
    assert local.placement == "local" and local.rpc_workers == ()
    _, pinned = spec_for(TWO, {"rpc_workers": "10.0.0.9:2"}, i)
    assert pinned.placement == "workers" and [w.port for w in pinned.rpc_workers] == [2]
    _, none = spec_for({}, {}, i)
    assert none.rpc_workers == ()
    with pytest.raises(BadRequest, match="not in OLLAMAPY_RPC_WORKERS"):
        spec_for(TWO, {"rpc_workers": "10.9.9.9:1"}, i)  # never an arbitrary host
    with pytest.raises(BadRequest, match="invalid placement"):
        spec_for(TWO, {"placement": "moon"}, i)
    # auto matches any loaded placement; an explicit one reloads when it differs
    assert not needs_reload(pinned, auto)
    assert needs_reload(auto, pinned) and needs_reload(pinned, local)


def test_a_model_that_fits_locally_stays_local() -> None:
    i = inv(48 * GiB)  # CPU host, RAM holds 3.1 GiB easily
    s, spec = spec_for(TWO, {}, i)
    assert not wants_workers(spec, FACTS, i, s)
    gpu = inv(48 * GiB, 8 * GiB)
    s, spec = spec_for(TWO, {}, gpu)
    assert not wants_workers(spec, FACTS, gpu, s)


def test_a_model_split_over_a_small_gpu_and_ram_asks_no_worker() -> None:
    """Part on a 1 GiB GPU, the rest in 48 GiB of RAM: plan_split keeps such a model local,
    so the workers are not asked either (each query can take seconds, answered for nothing)."""
    i = inv(48 * GiB, 1 * GiB)
    s, spec = spec_for(TWO, {}, i)
    assert not place(FACTS, i, estimate_options(spec, s)).estimate.fully_loaded
    assert not wants_workers(spec, FACTS, i, s)
    plan, _ = split_plan(FACTS, spec, i, [worker(1, 8 * GiB), worker(2, 8 * GiB)], s)
    assert not plan.uses_workers  # what the answers would have decided


def test_does_not_fit_locally_or_pinned_uses_workers() -> None:
    small = inv(1 * GiB)  # 1 GiB of RAM: the 3.1 GiB model does not fit here
    s, spec = spec_for(TWO, {}, small)
    assert wants_workers(spec, FACTS, small, s)
    plan, _ = split_plan(FACTS, spec, small, [worker(1, 8 * GiB), worker(2, 8 * GiB)], s)
    assert plan.uses_workers
    s, pinned = spec_for(TWO, {"placement": "workers"}, inv(48 * GiB))
    assert wants_workers(pinned, None, inv(48 * GiB), s)
    s, local = spec_for(TWO, {"placement": "local"}, small)
    assert not wants_workers(local, FACTS, small, s)
    s, unconfigured = spec_for({}, {"placement": "workers"}, small)
    assert not wants_workers(unconfigured, FACTS, small, s)


def test_local_gpu_plus_two_workers_argv() -> None:
    i = inv(1 * GiB, 1500 * MiB)
    s, spec = spec_for(TWO, {}, i)
    plan, shares = split_plan(FACTS, spec, i, [worker(1, 1200 * MiB), worker(2, 1200 * MiB)], s)
    assert plan.cpu_layers == 0 and plan.n_gpu_layers == 31
    assert [t.name for t in plan.devices] == ["RPC0", "RPC1", "CUDA0"]
    cfg = launch_config(spec, None, i, settings=s, gpu_backend=True, embedding_model=False,
                        alias="big", max_loaded=3, rpc=plan)
    args = build_args(cfg)
    at = args.index("--rpc")
    assert args[at:at + 10] == ["--rpc", "10.0.0.9:1,10.0.0.9:2", "--device", "RPC0,RPC1,CUDA0",
                                "--tensor-split", ",".join(map(str, plan.layers)),
                                "--n-gpu-layers", "31", "--fit", "off"]
    assert "--split-mode" not in args
    # /api/ps shares: every layer on exactly one device, the sizes add up
    sizes, reserve = split_inputs(FACTS, spec, s)
    assert sum(d.layers for d in shares) == 31
    assert sum(d.size for d in shares) == sum(sizes) + reserve * len(shares)
    assert [d.endpoint for d in shares] == ["10.0.0.9:1", "10.0.0.9:2", ""]


def test_cpu_only_host_plus_workers_on_a_cpu_build() -> None:
    i = inv(1 * GiB)
    s, spec = spec_for(TWO, {}, i)
    plan, shares = split_plan(FACTS, spec, i, [worker(1, 2 * GiB), worker(2, 2 * GiB)], s)
    assert plan.uses_workers and plan.cpu_layers == 0 and all(d.endpoint for d in shares)
    cfg = launch_config(spec, None, i, settings=s, gpu_backend=False, embedding_model=False,
                        alias="big", max_loaded=3, rpc=plan)
    args = build_args(cfg)
    # a CPU-only runner build still gets the device split: the workers are its devices
    assert args[args.index("--device") + 1] == "RPC0,RPC1"
    assert args[args.index("--n-gpu-layers") + 1] == "31"
    assert args.count("--fit") == 1


def test_uneven_memory_and_budgets() -> None:
    i = inv(1 * GiB)
    s, spec = spec_for({"OLLAMAPY_RPC_WORKERS": "10.0.0.9:1@800,10.0.0.9:2"}, {}, i)
    # worker 1 reports 64 GiB (a CPU worker reports all its RAM) but its budget is 800 MiB
    plan, shares = split_plan(FACTS, spec, i, [worker(1, 64 * GiB, 800 * MiB),
                                               worker(2, 3 * GiB)], s)
    by = {d.endpoint: d for d in shares}
    assert plan.workers == ("10.0.0.9:1", "10.0.0.9:2")
    assert by["10.0.0.9:1"].size <= 800 * MiB
    assert by["10.0.0.9:2"].layers > by["10.0.0.9:1"].layers


def test_a_worker_down_is_left_out_or_named() -> None:
    i = inv(1 * GiB)
    s, spec = spec_for(TWO, {}, i)
    down = worker(2, 0, error="Connection refused")
    plan, _ = split_plan(FACTS, spec, i, [worker(1, 4 * GiB), down], s)
    assert plan.workers == ("10.0.0.9:1",)  # loads on what remains
    assert any("10.0.0.9:2" in w for w in plan.warnings)
    with pytest.raises(PlacementError, match=r"RPC worker 10\.0\.0\.9:2 \(Connection refused\)"):
        split_plan(FACTS, spec, i, [worker(1, 1 * GiB), down], s)


def test_workers_held_by_another_runner_are_not_available() -> None:
    specs = load_settings(TWO).rpc_workers
    [held] = unavailable(specs, {"10.0.0.9:2": "other"})
    assert held.busy and not held.up and "other" in held.error


def test_failure_message_names_the_workers() -> None:
    i = inv(1 * GiB)
    s, spec = spec_for(TWO, {}, i)
    plan, _ = split_plan(FACTS, spec, i, [worker(1, 2 * GiB), worker(2, 2 * GiB)], s)
    msg = runner_failure_message(None, plan)
    assert "10.0.0.9:1, 10.0.0.9:2" in msg and msg.startswith("model runner has unexpectedly")
    assert runner_failure_message(None, None) == runner_failure_message(None)


# --- the actor's load path against fake rpc-servers -------------------------------------------


class FakeWorkers:
    """In-process fake rpc-servers on loopback ports."""

    def __init__(self) -> None:
        self.servers: dict[int, asyncio.Server] = {}

    async def __call__(self, handler: Any) -> int:
        srv = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = int(srv.sockets[0].getsockname()[1])
        self.servers[port] = srv
        return port

    async def close(self, port: int) -> None:
        srv = self.servers.pop(port)
        srv.close()
        await srv.wait_closed()


@pytest.fixture
async def workers() -> AsyncIterator[FakeWorkers]:
    fw = FakeWorkers()
    yield fw
    for port in list(fw.servers):
        await fw.close(port)


async def scheduler(env: dict[str, str], ram_free: int) -> tuple[Scheduler, FakeLauncher]:
    launcher = FakeLauncher()
    s = Scheduler(load_settings(env), launcher=launcher, discover_fn=lambda: inv(ram_free),
                  facts_fn=lambda m: FACTS)
    await s.start()
    return s, launcher


async def test_load_splits_over_workers_and_ps_shows_it(workers) -> None:
    p1 = await workers(rpc_handler([(2 * GiB, 2 * GiB)]))
    p2 = await workers(rpc_handler([(2 * GiB, 2 * GiB)]))
    s, launcher = await scheduler({"OLLAMAPY_RPC_WORKERS": f"127.0.0.1:{p1},127.0.0.1:{p2}"},
                                  1 * GiB)
    try:
        async with s.lease(model("big", str(PATH)), {"num_ctx": 512}, None):
            cfg = launcher.handles[0].cfg
            assert cfg.rpc_workers == (f"127.0.0.1:{p1}", f"127.0.0.1:{p2}")
            assert cfg.devices == ("RPC0", "RPC1") and sum(cfg.tensor_split) == 31
            [st] = s.ps()
            assert {d.endpoint for d in st.devices} == set(cfg.rpc_workers)
            [m] = json.loads(ps_body(s))["models"]
            assert [d["worker"] for d in m["devices"]] == list(cfg.rpc_workers)
            assert "RPC(2)" in rows([m])[0][3]
    finally:
        await s.stop()


async def test_fits_locally_never_queries_workers(workers) -> None:
    asked: list[int] = []

    async def counting(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        asked.append(1)
        writer.close()

    port = await workers(counting)
    s, launcher = await scheduler({"OLLAMAPY_RPC_WORKERS": f"127.0.0.1:{port}"}, 48 * GiB)
    try:
        await settle()
        asked.clear()  # the start-up probe asked once; loads must not
        async with s.lease(model("big", str(PATH)), {"num_ctx": 512}, None):
            assert launcher.handles[0].cfg.rpc_workers == ()
            [st] = s.ps()
            assert st.devices == ()
            assert "devices" not in json.loads(ps_body(s))["models"][0]  # Ollama's shape
        assert asked == []
    finally:
        await s.stop()


async def test_down_or_busy_worker_is_left_out_and_too_small_is_a_clear_error(workers) -> None:
    up = await workers(rpc_handler([(4 * GiB, 4 * GiB)]))
    busy = await workers(silent)
    s, launcher = await scheduler(
        {"OLLAMAPY_RPC_WORKERS": f"127.0.0.1:{up},127.0.0.1:{busy},127.0.0.1:1"}, 1 * GiB)
    try:
        async with s.lease(model("big", str(PATH)), {"num_ctx": 512}, None):
            assert launcher.handles[0].cfg.rpc_workers == (f"127.0.0.1:{up}",)
    finally:
        await s.stop()
    small = await workers(rpc_handler([(1 * GiB, 1 * GiB)]))
    s, launcher = await scheduler(
        {"OLLAMAPY_RPC_WORKERS": f"127.0.0.1:{small},127.0.0.1:1"}, 1 * GiB)
    try:
        with pytest.raises(PlacementError, match=r"RPC worker 127\.0\.0\.1:1 \("):
            async with s.lease(model("big", str(PATH)), {"num_ctx": 512}, None):
                pass
        assert launcher.handles == []
    finally:
        await s.stop()


async def test_runner_death_reloads_without_the_dead_worker(workers) -> None:
    ports = [await workers(rpc_handler([(2 * GiB, 2 * GiB)])) for _ in range(2)]
    s, launcher = await scheduler(
        {"OLLAMAPY_RPC_WORKERS": ",".join(f"127.0.0.1:{p}" for p in ports)}, 2 * GiB)
    try:
        m = model("big", str(PATH))
        async with s.lease(m, {"num_ctx": 512}, None) as lease:
            assert len(launcher.handles[0].cfg.rpc_workers) == 2
            await workers.close(ports[1])  # the worker dies...
            launcher.handles[0].crash()  # ...and llama.cpp aborts the runner
            err = lease.fail(ConnectionResetError())
            assert "RPC workers" in err.message and f"127.0.0.1:{ports[1]}" in err.message
        await settle()
        # the next request reloads on what answers: worker 1 + the CPU for the rest
        async with s.lease(m, {"num_ctx": 512}, None):
            assert len(launcher.handles) == 2
            cfg = launcher.handles[1].cfg
            assert cfg.rpc_workers == (f"127.0.0.1:{ports[0]}",)
            assert 0 < cfg.n_gpu_layers < 31  # what does not fit the worker stays on the CPU
    finally:
        await s.stop()


def test_pinned_to_workers_with_none_up_is_an_error_naming_them() -> None:
    i = inv(48 * GiB)
    s, spec = spec_for(TWO, {"placement": "workers"}, i)
    down = [worker(1, 0, error="Connection refused"), worker(2, 0, error="Connection refused")]
    with pytest.raises(PlacementError, match=r"pinned.*RPC worker 10\.0\.0\.9:1 \(Conn"):
        split_plan(FACTS, spec, i, down, s)


async def test_failed_split_runner_is_replaced_even_while_it_still_answers(workers) -> None:
    ports = [await workers(rpc_handler([(2 * GiB, 2 * GiB)])) for _ in range(2)]
    s, launcher = await scheduler(
        {"OLLAMAPY_RPC_WORKERS": ",".join(f"127.0.0.1:{p}" for p in ports)}, 2 * GiB)
    try:
        m = model("big", str(PATH))
        async with s.lease(m, {"num_ctx": 512}, None) as lease:
            lease.fail(ConnectionResetError())  # the process has not exited (yet)
        await settle()
        assert launcher.handles[0].stops == 1  # stopped, not health-checked back into service
        async with s.lease(m, {"num_ctx": 512}, None):
            assert len(launcher.handles) == 2
    finally:
        await s.stop()
