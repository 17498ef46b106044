"""RPC workers: the query client against in-process fake rpc-servers (good, busy, hostile), and the
pure placement over mixed inventories."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from ollamapy.errors import PlacementError
from ollamapy.placement.gpu import GpuDevice
from ollamapy.placement.rpc import (
    CMD_DEVICE_COUNT,
    CMD_GET_DEVICE_MEMORY,
    CMD_GET_MAX_SIZE,
    CMD_HELLO,
    CONN_CAPS_SIZE,
    RpcDevice,
    WorkerInfo,
    WorkerSpec,
    parse_workers,
    plan_split,
    query_worker,
    query_workers,
)

MiB = 1024 * 1024
GiB = 1024 * MiB

# --- a fake rpc-server speaking protocol v7 -----------------------------------------------------

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def rpc_handler(devices: list[tuple[int, int]], version: tuple[int, int, int] = (7, 0, 0),
                count_override: int | None = None, lie_size: bool = False) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                cmd = (await reader.readexactly(1))[0]
                (n,) = struct.unpack("<Q", await reader.readexactly(8))
                payload = await reader.readexactly(n)
                if cmd == CMD_HELLO:
                    assert n == CONN_CAPS_SIZE
                    out = bytes(version) + b"\0" + bytes(CONN_CAPS_SIZE)
                elif cmd == CMD_DEVICE_COUNT:
                    c = len(devices) if count_override is None else count_override
                    out = struct.pack("<I", c)
                elif cmd == CMD_GET_DEVICE_MEMORY:
                    (i,) = struct.unpack("<I", payload)
                    out = struct.pack("<QQ", *devices[i])
                elif cmd == CMD_GET_MAX_SIZE:
                    out = struct.pack("<Q", 2**63)
                else:
                    return
                size = 2**40 if lie_size else len(out)
                writer.write(struct.pack("<Q", size) + out)
                await writer.drain()
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()

    return handle


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(10)  # accepted, never answered: a worker busy with another client
    writer.close()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[WorkerSpec]]]:
    servers: list[asyncio.Server] = []

    async def start(handler: Handler) -> WorkerSpec:
        srv = await asyncio.start_server(handler, "127.0.0.1", 0)
        servers.append(srv)
        return WorkerSpec("127.0.0.1", srv.sockets[0].getsockname()[1])

    yield start
    for s in servers:
        s.close()
        await s.wait_closed()


async def test_query_reads_devices_and_memory(serve) -> None:
    spec = await serve(rpc_handler([(3 * GiB, 4 * GiB), (8 * GiB, 4 * GiB)]))
    info = await query_worker(spec)
    assert info.up and info.error == ""
    assert info.version == (7, 0, 0)
    assert info.devices == (RpcDevice(0, 3 * GiB, 4 * GiB, 0), RpcDevice(1, 4 * GiB, 4 * GiB, 0))


async def test_query_refuses_other_protocol_major(serve) -> None:
    info = await query_worker(await serve(rpc_handler([(GiB, GiB)], version=(6, 1, 0))))
    assert not info.up and "RPC protocol 6.1.0" in info.error


async def test_query_never_trusts_peer_sizes(serve) -> None:
    info = await query_worker(await serve(rpc_handler([(GiB, GiB)], lie_size=True)))
    assert not info.up and "expected 28" in info.error


async def test_query_caps_device_count(serve) -> None:
    info = await query_worker(await serve(rpc_handler([(GiB, GiB)], count_override=1 << 30)))
    assert not info.up and "reports 1073741824 devices" in info.error


async def test_busy_worker_is_busy_not_down(serve) -> None:
    info = await query_worker(await serve(silent), deadline_s=0.3)
    assert info.busy and not info.up and info.error.startswith("busy")


async def test_down_worker_names_the_reason() -> None:
    srv = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    srv.close()
    await srv.wait_closed()
    [info] = await query_workers([WorkerSpec("127.0.0.1", port)], deadline_s=1.0)
    assert not info.up and not info.busy and info.error


# --- OLLAMAPY_RPC_WORKERS -----------------------------------------------------------------------


def test_parse_workers() -> None:
    ws = parse_workers("10.0.0.2:50052@4096, gpu-box:50053")
    assert [w.endpoint for w in ws] == ["10.0.0.2:50052", "gpu-box:50053"]
    assert ws[0].mem == 4096 * MiB and ws[1].mem == 0
    assert parse_workers("") == ()


@pytest.mark.parametrize("bad", ["host", ":50052", "h:0", "h:99999", "h:1@x", "h:1@0",
                                 "[::1]:50052", "::1:50052", "a b:1", "h:1,h:1"])
def test_parse_workers_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_workers(bad)


# --- placement ----------------------------------------------------------------------------------

LAYER = 100 * MiB
SIZES = [LAYER] * 30 + [150 * MiB]  # 30 blocks + the output layer: 3150 MiB


def gpu(free: int, index: int = 0) -> GpuDevice:
    return GpuDevice(index=index, id=f"GPU-{index}", library="cuda", name="test", total=free,
                     free=free)


def worker(port: int, *frees: int, mem: int = 0, error: str = "") -> WorkerInfo:
    spec = WorkerSpec("10.0.0.9", port, mem)
    devs = tuple(RpcDevice(i, f, f) for i, f in enumerate(frees))
    return WorkerInfo(spec, (7, 0, 0) if not error else None, devs if not error else (), error)


def test_model_that_fits_locally_never_touches_a_worker() -> None:
    p = plan_split(SIZES, [gpu(8 * GiB)], [worker(1, 8 * GiB)])
    assert not p.uses_workers and p.workers == ()
    assert [t.name for t in p.devices] == ["CUDA0"] and p.layers == (31,)
    assert p.argv() == ["--device", "CUDA0", "--tensor-split", "31", "--n-gpu-layers", "31",
                        "--fit", "off"]


def test_local_gpu_plus_two_workers() -> None:
    # 1 GiB local GPU (minus its 457 MiB floor), two 1.2 GiB workers: nobody alone holds 3.1 GiB.
    p = plan_split(SIZES, [gpu(GiB + 457 * MiB)], [worker(1, 1200 * MiB), worker(2, 1200 * MiB)])
    assert p.cpu_layers == 0 and p.n_gpu_layers == 31
    assert [t.name for t in p.devices] == ["RPC0", "RPC1", "CUDA0"]
    # Local first: CUDA0 takes the output layer and as many blocks as fit, workers the rest.
    # CUDA0: 1024 MiB = output (150) + 8 blocks; RPC1: 12 blocks; RPC0: the first 10.
    assert p.layers == (10, 12, 9)
    assert p.argv()[:6] == ["--rpc", "10.0.0.9:1,10.0.0.9:2", "--device", "RPC0,RPC1,CUDA0",
                            "--tensor-split", "10,12,9"]
    assert "RPC1(10.0.0.9:2)=12" in p.describe()


def test_cpu_only_host_plus_workers_pinned() -> None:
    # No GPU here: a model pinned to workers goes there even though RAM could hold it.
    p = plan_split(SIZES, [], [worker(1, 2 * GiB), worker(2, 2 * GiB)], mode="workers",
                   cpu_free=64 * GiB)
    assert p.cpu_layers == 0 and sum(p.layers) == 31
    assert [t.name for t in p.devices] == ["RPC0", "RPC1"]
    assert p.layers == (12, 19)  # RPC1: output + 18 blocks (1950 MiB), RPC0 the first 12


def test_cpu_only_auto_stays_local_when_ram_holds_it() -> None:
    p = plan_split(SIZES, [], [worker(1, 2 * GiB)], cpu_free=8 * GiB)
    assert not p.uses_workers and p.cpu_layers == 31 and p.argv()[:2] == ["--device", "none"]


def test_cpu_only_auto_uses_workers_then_cpu_for_the_rest() -> None:
    p = plan_split(SIZES, [], [worker(1, 1 * GiB)], cpu_free=3 * GiB)  # 3150 MiB > 3 GiB
    assert p.workers == ("10.0.0.9:1",)
    assert p.layers == (9,) and p.cpu_layers == 22  # the leading layers stay on the CPU


def test_uneven_memory_and_worker_budget_cap() -> None:
    # The worker reports 64 GiB (a CPU worker reports all RAM), its @MiB budget says 500 MiB.
    p = plan_split(SIZES, [], [worker(1, 4 * GiB), worker(2, 64 * GiB, mem=500 * MiB)],
                   mode="workers")
    assert p.layers == (27, 4) and [t.name for t in p.devices] == ["RPC0", "RPC1"]


def test_multi_device_worker_shares_its_budget_and_numbering() -> None:
    p = plan_split(SIZES, [], [worker(1, 1 * GiB, 1 * GiB, mem=1500 * MiB), worker(2, 2 * GiB)],
                   mode="workers")
    # worker 1: device 0 gets 1 GiB of the budget, device 1 the remaining 476 MiB.
    assert [t.name for t in p.devices] == ["RPC0", "RPC1", "RPC2"]
    assert p.layers == (8, 4, 19)


def test_reserve_per_device_is_kept_free() -> None:
    p = plan_split(SIZES, [], [worker(1, 2 * GiB), worker(2, 2 * GiB)], mode="workers",
                   reserve=600 * MiB, cpu_free=GiB)
    assert p.layers == (14, 13) and p.cpu_layers == 4  # 1448 MiB usable on each


def test_worker_down_is_left_out_with_a_warning() -> None:
    p = plan_split(SIZES, [], [worker(1, error="Connection refused"), worker(2, 4 * GiB)],
                   mode="workers")
    assert p.workers == ("10.0.0.9:2",)
    assert [t.name for t in p.devices] == ["RPC0"]  # numbered over the --rpc list actually passed
    assert p.warnings == ("RPC worker 10.0.0.9:1 left out: Connection refused",)


def test_unused_worker_is_dropped_and_later_ones_renumbered() -> None:
    p = plan_split(SIZES, [], [worker(1, 10 * MiB), worker(2, 4 * GiB)], mode="workers")
    assert p.workers == ("10.0.0.9:2",) and [t.name for t in p.devices] == ["RPC0"]


def test_no_longer_fits_names_the_missing_worker() -> None:
    with pytest.raises(PlacementError) as e:
        plan_split(SIZES, [], [worker(1, error="Connection refused"), worker(2, 2 * GiB)],
                   mode="workers", cpu_free=0)
    assert "RPC worker 10.0.0.9:1 (Connection refused)" in str(e.value)
    assert "requires 3150 MiB" in str(e.value)


def test_local_mode_refuses_when_it_does_not_fit() -> None:
    with pytest.raises(PlacementError):
        plan_split(SIZES, [gpu(GiB)], [worker(1, 64 * GiB)], mode="local", cpu_free=GiB)


def test_unknown_mode() -> None:
    with pytest.raises(ValueError):
        plan_split(SIZES, [], [], mode="somewhere")


# --- the placement option -------------------------------------------------------------------------

CONFIGURED = parse_workers("10.0.0.2:50052@1024,10.0.0.3:50052")


def test_placement_request_defaults_and_pins() -> None:
    from ollamapy.placement.rpc import placement_request

    assert placement_request({}, CONFIGURED).mode == "auto"
    assert placement_request({}, CONFIGURED).workers == CONFIGURED
    assert placement_request({"placement": "local"}, CONFIGURED).workers == ()
    pinned = placement_request({"rpc_workers": "10.0.0.3:50052"}, CONFIGURED)
    assert pinned.mode == "workers" and pinned.workers == (CONFIGURED[1],)
    assert placement_request({"rpc_workers": ["10.0.0.2:50052"]}, CONFIGURED).workers[0].mem


@pytest.mark.parametrize("opts", [{"placement": "gpu"}, {"rpc_workers": "evil.example:1"},
                                  {"rpc_workers": 5}, {"rpc_workers": "nohost"}])
def test_placement_request_rejects(opts: dict) -> None:
    from ollamapy.errors import BadRequest
    from ollamapy.placement.rpc import placement_request

    with pytest.raises(BadRequest):
        placement_request(opts, CONFIGURED)
