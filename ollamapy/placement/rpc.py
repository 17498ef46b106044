"""RPC workers: ask a llama.cpp `ggml-rpc-server` for its devices, and place layers over them.

Two halves, both used by the scheduler before a load:

* `query_worker(endpoint)`: a client of the ggml RPC protocol's query commands only (HELLO,
  DEVICE_COUNT, GET_DEVICE_MEMORY, GET_MAX_SIZE), wire format of protocol v7
  (ggml/src/ggml-rpc/ggml-rpc.cpp). A worker is untrusted input: every reply must have exactly the
  size the command defines (we never read a length the peer chose), counts are capped, and the
  whole exchange has one deadline.
* `plan_split(...)`: pure. Given the per-layer sizes of the memory estimate, the local GPUs and the
  workers' devices, decide layers per device and the llama-server argv (`--rpc`, `--device`,
  `--tensor-split`, `-ngl`).

Scheduler wiring (phase 2), before each load of a model whose request/Modelfile does not say
`placement local` and when OLLAMAPY_RPC_WORKERS is set:

    req = placement_request(options, settings["OLLAMAPY_RPC_WORKERS"])  # BadRequest on bad input
    infos = await query_workers(req.workers)                      # never raises; down = error set
    kv = memory.kv_cache(facts, num_ctx * num_parallel, batch, num_parallel, kv_type)
    plan = plan_split(layer_sizes(facts.layer_bytes, kv, facts.output_bytes), inventory.gpus,
                      infos, mode=req.mode, cpu_free=inventory.system.free,
                      reserve=estimate.graph_partial, gpu_overhead=opts.gpu_overhead)
    if plan.uses_workers: llama-server argv += plan.argv() instead of the -ngl/--tensor-split/
        --fit that memory.place gave; log plan.describe(); /api/ps reports plan.describe().

A runner using workers that dies (llama.cpp aborts on any RPC failure) fails its requests; the next
load re-queries, so a dead worker is left out (PlacementError names it if the model then does not
fit). The scheduler must also remember which loaded runner holds which worker.

The RPC server serves ONE client at a time (accept, serve until it disconnects, accept the next).
While a llama-server is connected, a query is accepted by the kernel but never answered: we report
that worker as busy (it belongs to another loaded model) rather than down.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from ollamapy.errors import BadRequest, PlacementError
from ollamapy.placement.gpu import GpuDevice, MiB

PROTO_MAJOR = 7  # RPC_PROTO_MAJOR_VERSION of the vendored ggml (ggml/include/ggml-rpc.h)
PROTO_MINOR = 0
CONN_CAPS_SIZE = 24  # RPC_CONN_CAPS_SIZE (transport.h); all-zero caps = plain TCP, no upgrade
CMD_GET_ALIGNMENT = 1
CMD_GET_MAX_SIZE = 2
CMD_GET_DEVICE_MEMORY = 11
CMD_HELLO = 14
CMD_DEVICE_COUNT = 15
MAX_DEVICES = 16  # a worker claiming more is lying or broken (GGML_RPC_MAX_SERVERS scale)
DEFAULT_PORT = 50052  # rpc-server's default
QUERY_TIMEOUT_S = 3.0

# llama.cpp device-name prefix per GPU library (ggml_backend_dev_name of each backend).
LOCAL_DEVICE_PREFIX = {"cuda": "CUDA", "rocm": "ROCm", "vulkan": "Vulkan", "metal": "MTL"}

# --- worker addresses ---------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerSpec:
    """One entry of OLLAMAPY_RPC_WORKERS: `host:port[@MiB]`.

    `@MiB` is the memory the server may use on that worker. llama.cpp's protocol reports a CPU
    worker's whole physical RAM as free, and `ollamapy worker --mem` can only enforce its cap
    (RLIMIT_DATA), not report it, so the server side states the budget here."""

    host: str
    port: int
    mem: int = 0  # bytes; 0 = what the worker reports

    @property
    def endpoint(self) -> str:
        """What llama-server's --rpc takes (rpc-server splits at the first ':')."""
        return f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> WorkerSpec:
        s = text.strip()
        mem = 0
        if "@" in s:
            s, _, m = s.rpartition("@")
            if not m.isdigit() or int(m) <= 0:
                raise ValueError(f"worker {text!r}: memory after '@' must be MiB > 0")
            mem = int(m) * MiB
        host, sep, port = s.rpartition(":")
        if not sep or not host:
            raise ValueError(f"worker {text!r}: expected host:port")
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"worker {text!r}: bad port {port!r}")
        if host.startswith("[") or ":" in host:
            # rpc-server's parse_endpoint splits at the first ':'
            raise ValueError(f"worker {text!r}: llama.cpp's --rpc cannot take IPv6 addresses")
        if any(c in host for c in ",/@ \t") or len(host) > 253:
            raise ValueError(f"worker {text!r}: bad host")
        return cls(host, int(port), mem)


def parse_workers(value: str) -> tuple[WorkerSpec, ...]:
    """OLLAMAPY_RPC_WORKERS: comma separated, duplicates are an error (llama.cpp would register
    the same endpoint once but number its devices twice in our plan)."""
    specs = tuple(WorkerSpec.parse(p) for p in value.split(",") if p.strip())
    seen = [s.endpoint for s in specs]
    dup = {e for e in seen if seen.count(e) > 1}
    if dup:
        raise ValueError(f"worker listed twice: {', '.join(sorted(dup))}")
    return specs


# --- the query client -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RpcDevice:
    index: int  # device number on that worker
    free: int
    total: int
    max_size: int = 0  # largest single buffer (0 = unknown/unbounded)


@dataclass(frozen=True)
class WorkerInfo:
    """What one worker answered, or why it did not (`error` non-empty: left out of placement)."""

    spec: WorkerSpec
    version: tuple[int, int, int] | None = None
    devices: tuple[RpcDevice, ...] = ()
    error: str = ""
    busy: bool = False  # connected, but it is serving another client (another loaded model)

    @property
    def up(self) -> bool:
        return not self.error and bool(self.devices)

    @property
    def endpoint(self) -> str:
        return self.spec.endpoint


class RpcProtocolError(Exception):
    """The peer broke the protocol (wrong sizes, version, counts)."""


async def _command(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, cmd: int,
                   payload: bytes, reply_size: int) -> bytes:
    """| cmd u8 | size u64 | payload | -> | size u64 | reply |, the reply size fixed by `cmd`."""
    writer.write(struct.pack("<BQ", cmd, len(payload)) + payload)
    await writer.drain()
    (size,) = struct.unpack("<Q", await reader.readexactly(8))
    if size != reply_size:
        raise RpcProtocolError(f"command {cmd}: reply of {size} bytes, expected {reply_size}")
    return await reader.readexactly(reply_size)


async def _query(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 spec: WorkerSpec) -> WorkerInfo:
    hello = await _command(reader, writer, CMD_HELLO, bytes(CONN_CAPS_SIZE), 4 + CONN_CAPS_SIZE)
    major, minor, patch = hello[0], hello[1], hello[2]
    if major != PROTO_MAJOR or minor > PROTO_MINOR:
        raise RpcProtocolError(f"RPC protocol {major}.{minor}.{patch}, this ollamapy speaks "
                               f"{PROTO_MAJOR}.{PROTO_MINOR} (rebuild the worker's runner)")
    (count,) = struct.unpack("<I", await _command(reader, writer, CMD_DEVICE_COUNT, b"", 4))
    if count == 0 or count > MAX_DEVICES:
        raise RpcProtocolError(f"worker reports {count} devices")
    devices = []
    for i in range(count):
        dev = struct.pack("<I", i)
        free, total = struct.unpack(
            "<QQ", await _command(reader, writer, CMD_GET_DEVICE_MEMORY, dev, 16))
        (max_size,) = struct.unpack("<Q", await _command(reader, writer, CMD_GET_MAX_SIZE, dev, 8))
        if free > total:
            free = total  # some backends over-report; never trust free above total
        devices.append(RpcDevice(i, free, total, max_size if max_size < 2**62 else 0))
    return WorkerInfo(spec, (major, minor, patch), tuple(devices))


async def query_worker(spec: WorkerSpec, *, deadline_s: float = QUERY_TIMEOUT_S) -> WorkerInfo:
    """Devices and free memory of one worker; never raises for a worker's fault."""
    writer: asyncio.StreamWriter | None = None
    connected = False
    try:
        async with asyncio.timeout(deadline_s):
            reader, writer = await asyncio.open_connection(spec.host, spec.port, limit=64 * 1024)
            connected = True
            return await _query(reader, writer, spec)
    except TimeoutError:
        if connected:  # accepted by the kernel, never served: another client holds it
            return WorkerInfo(spec, error="busy: serving another llama-server", busy=True)
        return WorkerInfo(spec, error=f"no answer within {deadline_s:g}s")
    except asyncio.IncompleteReadError:
        return WorkerInfo(spec, error="closed the connection mid-reply")
    except RpcProtocolError as e:
        return WorkerInfo(spec, error=str(e))
    except OSError as e:
        return WorkerInfo(spec, error=e.strerror or str(e))
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, asyncio.TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)


async def query_workers(specs: Sequence[WorkerSpec], *,
                        deadline_s: float = QUERY_TIMEOUT_S) -> list[WorkerInfo]:
    return list(await asyncio.gather(*(query_worker(s, deadline_s=deadline_s) for s in specs)))


async def hello(host: str, port: int, *, deadline_s: float = QUERY_TIMEOUT_S) -> WorkerInfo:
    """The health check of `ollamapy worker`: TCP connect + HELLO + device query."""
    return await query_worker(WorkerSpec(host, port), deadline_s=deadline_s)


# --- placement ------------------------------------------------------------------------------------

PLACEMENT_MODES = ("auto", "local", "workers")


@dataclass(frozen=True)
class Target:
    """A device layers can go to, with the bytes it can take for layers (reserves subtracted)."""

    name: str  # llama.cpp device name: CUDA0, RPC2, ... ("" for a worker until numbered)
    budget: int
    endpoint: str = ""  # worker host:port; "" for a local GPU
    device: int = 0  # device number on that worker


@dataclass(frozen=True)
class SplitPlan:
    """Layers per device. `devices`/`layers` are in --device order; llama.cpp gives the first
    `cpu_layers` layers to the CPU and the rest, in order, to these devices (output layer last)."""

    devices: tuple[Target, ...]
    layers: tuple[int, ...]
    cpu_layers: int
    total_layers: int  # block_count + 1 (the output layer)
    workers: tuple[str, ...] = ()  # endpoints for --rpc, in the order devices are numbered
    warnings: tuple[str, ...] = ()

    @property
    def n_gpu_layers(self) -> int:
        return sum(self.layers)

    @property
    def uses_workers(self) -> bool:
        return bool(self.workers)

    def argv(self) -> list[str]:
        """llama-server flags. `--fit off`: our split is the decision, llama.cpp must not redo it
        (its fit would also query every worker again)."""
        out: list[str] = []
        if self.workers:
            out += ["--rpc", ",".join(self.workers)]
        if self.devices:
            out += ["--device", ",".join(t.name for t in self.devices),
                    "--tensor-split", ",".join(str(n) for n in self.layers)]
        else:
            out += ["--device", "none"]
        out += ["--n-gpu-layers", str(self.n_gpu_layers), "--fit", "off"]
        return out

    def describe(self) -> str:
        """One log line: where every layer lives."""
        parts = [f"CPU={self.cpu_layers}"] if self.cpu_layers else []
        for t, n in zip(self.devices, self.layers, strict=True):
            parts.append(f"{t.name}{'(' + t.endpoint + ')' if t.endpoint else ''}={n}")
        return " ".join(parts) + f" of {self.total_layers} layers"


def worker_targets(workers: Sequence[WorkerInfo], reserve: int) -> tuple[list[Target], list[str]]:
    """Targets of the workers that are up (unnamed until the plan knows which workers it uses);
    down or busy workers are left out with a warning. A worker's `@MiB` budget is shared by its
    devices in order."""
    targets: list[Target] = []
    warnings: list[str] = []
    for w in workers:
        if not w.up:
            warnings.append(f"RPC worker {w.endpoint} left out: {w.error or 'no devices'}")
            continue
        remaining = w.spec.mem or None
        for d in w.devices:
            free = d.free if remaining is None else min(d.free, remaining)
            if remaining is not None:
                remaining -= free
            targets.append(Target("", max(0, free - reserve), w.endpoint, d.index))
    return targets, warnings


def local_targets(gpus: Sequence[GpuDevice], reserve: int, overhead: int = 0) -> list[Target]:
    out = []
    for g in gpus:
        prefix = LOCAL_DEVICE_PREFIX.get(g.library, g.library.upper())
        budget = g.free - reserve - overhead - g.minimum_memory
        out.append(Target(f"{prefix}{g.index}", max(0, budget)))
    return out


def _pack_suffix(sizes: Sequence[int], targets: Sequence[Target]) -> tuple[list[int], int]:
    """Fill targets from the last one backwards with the last layers (llama.cpp puts the offloaded
    suffix on the devices in --device order, output layer on the last). Returns layers per target
    and how many leading layers are left for the CPU. Greedy is optimal for a contiguous suffix."""
    counts = [0] * len(targets)
    li = len(sizes) - 1
    for ti in range(len(targets) - 1, -1, -1):
        room = targets[ti].budget
        while li >= 0 and sizes[li] <= room:
            room -= sizes[li]
            counts[ti] += 1
            li -= 1
        if li < 0:
            break
    return counts, li + 1


def plan_split(layer_sizes: Sequence[int], local_gpus: Sequence[GpuDevice],
               workers: Sequence[WorkerInfo], *, mode: str = "auto", cpu_free: int = 0,
               reserve: int = 0, gpu_overhead: int = 0) -> SplitPlan:
    """Decide where each layer of a model goes over local GPUs, RPC workers and the CPU.

    layer_sizes: bytes per offloadable layer, blk.0 .. blk.N-1 then the output layer (weights +
      that layer's KV cache: `layer_sizes()` below builds it from the memory estimate).
    local_gpus: this host's GPUs of the runner's library (placement.gpu), free memory now.
    workers: `query_workers()` results; down or busy ones are left out with a warning.
    mode: "local" never uses a worker; "auto" (default) uses workers only when the model does not
      fit locally (local GPUs + `cpu_free`); "workers" (model pinned to workers) always does,
      and is a PlacementError when no worker can take a layer.
    cpu_free: system RAM the CPU may take for the layers nobody else can hold.
    reserve: bytes kept free on every device for its compute graph (estimate.graph_partial).
    gpu_overhead: OLLAMA_GPU_OVERHEAD, on local GPUs.

    Device order: workers first, local GPUs last, so the packing (from the output layer backwards)
    fills local GPUs first and workers only get what does not fit there. Devices that get no layer
    are dropped, and so are workers none of whose devices is used. Raises PlacementError (naming
    the workers that were left out) when the model does not fit."""
    if mode not in PLACEMENT_MODES:
        raise ValueError(f"placement mode {mode!r}: choose one of {', '.join(PLACEMENT_MODES)}")
    sizes = list(layer_sizes)
    total = len(sizes)
    local = local_targets(local_gpus, reserve, gpu_overhead)
    if mode != "workers":
        counts, cpu = _pack_suffix(sizes, local)
        local_ok = sum(sizes[:cpu]) <= cpu_free
        if mode == "local" or not workers or local_ok:
            if not local_ok:
                raise PlacementError(_too_large(sizes, local, cpu_free, workers))
            return _plan(local, counts, cpu, total, ())
    wtargets, warnings = worker_targets(workers, reserve)
    targets = wtargets + local
    counts, cpu = _pack_suffix(sizes, targets)
    if sum(sizes[:cpu]) > cpu_free:
        raise PlacementError(_too_large(sizes, targets, cpu_free, workers))
    if mode == "workers" and not any(n for t, n in zip(targets, counts, strict=True)
                                     if t.endpoint):
        # Pinned means "on workers": running it all here instead would hide a dead worker.
        down = [w for w in workers if not w.up]
        raise PlacementError("model is pinned to RPC workers, but no worker could take a layer"
                             + ("; left out: " + ", ".join(f"RPC worker {w.endpoint} ({w.error})"
                                                           for w in down) if down else ""))
    return _plan(targets, counts, cpu, total, warnings)


def fits_locally(layer_sizes: Sequence[int], local_gpus: Sequence[GpuDevice], *,
                 cpu_free: int, reserve: int = 0, gpu_overhead: int = 0) -> bool:
    """`plan_split`'s own test in auto mode: this host's GPUs, then its RAM for the leading
    layers they leave, hold the model (so no worker gets a layer; none need be asked)."""
    sizes = list(layer_sizes)
    _, cpu = _pack_suffix(sizes, local_targets(local_gpus, reserve, gpu_overhead))
    return sum(sizes[:cpu]) <= cpu_free


def _plan(targets: Sequence[Target], counts: Sequence[int], cpu: int, total: int,
          warnings: Sequence[str]) -> SplitPlan:
    """Drop unused devices and workers, then name worker devices RPC<n> as llama.cpp numbers
    them: over the --rpc endpoints in order, every device of each (used or not)."""
    used = [t.endpoint for t, n in zip(targets, counts, strict=True) if n and t.endpoint]
    endpoints = list(dict.fromkeys(t.endpoint for t in targets if t.endpoint in used))
    names: dict[tuple[str, int], str] = {}
    for e in endpoints:
        for t in targets:
            if t.endpoint == e:
                names[(e, t.device)] = f"RPC{len(names)}"
    keep = [(replace(t, name=names[(t.endpoint, t.device)]) if t.endpoint else t, n)
            for t, n in zip(targets, counts, strict=True) if n > 0]
    return SplitPlan(tuple(t for t, _ in keep), tuple(n for _, n in keep), cpu, total,
                     tuple(endpoints), tuple(warnings))


def _too_large(sizes: Sequence[int], targets: Sequence[Target], cpu_free: int,
               workers: Sequence[WorkerInfo]) -> str:
    need = sum(sizes)
    have = sum(t.budget for t in targets) + cpu_free
    msg = (f"model requires {need / MiB:.0f} MiB for its layers, but only {have / MiB:.0f} MiB "
           f"is available on {len(targets)} device(s) and the CPU")
    down = [w for w in workers if not w.up]
    if down:
        msg += "; left out: " + ", ".join(f"RPC worker {w.endpoint} ({w.error})" for w in down)
    return msg


@dataclass(frozen=True)
class PlacementRequest:
    """Where a model may go: the `placement` option (Modelfile `PARAMETER placement workers`, API
    `"options": {"placement": "local"}`) and an optional `rpc_workers` subset
    (`"rpc_workers": "10.0.0.2:50052"`) of OLLAMAPY_RPC_WORKERS to pin it to."""

    mode: str = "auto"
    workers: tuple[WorkerSpec, ...] = field(default_factory=tuple)


def placement_request(options: Mapping[str, object],
                      configured: Sequence[WorkerSpec]) -> PlacementRequest:
    """Validate the request/Modelfile options against the configured workers. Pinning to a
    worker the server was not configured with is refused: a request must not make the server
    connect to an arbitrary host."""
    mode = str(options.get("placement") or "auto").strip().lower()
    if mode not in PLACEMENT_MODES:
        raise BadRequest(f"invalid placement {mode!r}: use auto, local or workers")
    raw = options.get("rpc_workers")
    if raw in (None, "", []):
        return PlacementRequest(mode, tuple(configured) if mode != "local" else ())
    if isinstance(raw, str):
        items = [p for p in raw.split(",") if p.strip()]
    elif isinstance(raw, list) and all(isinstance(x, str) for x in raw):
        items = list(raw)
    else:
        raise BadRequest("rpc_workers must be a string host:port,... or a list of them")
    known = {w.endpoint: w for w in configured}
    picked = []
    for item in items:
        try:
            spec = WorkerSpec.parse(item)
        except ValueError as e:
            raise BadRequest(str(e)) from None
        if spec.endpoint not in known:
            raise BadRequest(f"RPC worker {spec.endpoint} is not in OLLAMAPY_RPC_WORKERS")
        picked.append(known[spec.endpoint])
    return PlacementRequest("workers" if mode == "auto" else mode, tuple(picked))


def layer_sizes(layer_bytes: Sequence[int], kv: Sequence[int], output_bytes: int) -> list[int]:
    """Per-offloadable-layer bytes from the memory estimate (memory.ModelFacts.layer_bytes,
    memory.kv_cache(...)) in the order llama.cpp numbers them, output layer last."""
    return [b + (kv[i] if i < len(kv) else 0) for i, b in enumerate(layer_bytes)] + [output_bytes]
