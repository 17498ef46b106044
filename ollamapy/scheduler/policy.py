"""Pure scheduling decisions: what a request needs from a runner, whether a loaded runner can
serve it, which runner to evict, limits and defaults. No I/O here: the actor in `core.py`
calls these and every one is unit-tested on plain values."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ollamapy.config import Settings
from ollamapy.inference.jsontypes import JsonObject
from ollamapy.keepalive import sort_key
from ollamapy.options import LOAD_OPTIONS
from ollamapy.placement.gpu import GiB, GpuDevice, Inventory
from ollamapy.placement.memory import (
    QUANTIZED_KV,
    EstimateOptions,
    ModelFacts,
    Placement,
    graph_size,
    kv_cache,
)
from ollamapy.placement.rpc import (
    SplitPlan,
    WorkerInfo,
    WorkerSpec,
    fits_locally,
    layer_sizes,
    placement_request,
    plan_split,
)
from ollamapy.runner.flags import LaunchConfig, cache_ram_mib

DEFAULT_BATCH = 512
GGML_MAX_THREADS = 512  # ggml's GGML_MAX_N_THREADS
# Families Ollama always runs with one slot (recurrent/vision state that can't be shared).
SINGLE_SLOT_FAMILIES = frozenset({
    "mllama", "qwen3vl", "qwen3vlmoe", "qwen35", "qwen35moe", "qwen3next", "lfm2", "lfm2moe",
    "nemotron_h", "nemotron_h_moe",
})


@dataclass(frozen=True)
class RunnerSpec:
    """Everything that, when it differs, needs a different llama-server process."""

    model_path: Path
    num_ctx: int  # per slot, after clamping to the training context
    num_parallel: int = 1
    num_batch: int = DEFAULT_BATCH
    num_gpu: int = -1  # -1 = automatic
    main_gpu: int | None = None
    use_mmap: bool | None = None
    num_thread: int = 0
    embedding: bool = False
    projectors: tuple[Path, ...] = ()
    adapters: tuple[Path, ...] = ()
    jinja: bool = True  # False: ollamapy renders the chat (llama-server gets --no-jinja)
    rerank: bool = False  # a reranker GGUF: llama-server --rerank
    placement: str = "auto"  # auto | local | workers (the `placement` option)
    rpc_workers: tuple[WorkerSpec, ...] = ()  # workers it may use (OLLAMAPY_RPC_WORKERS or a pin)


def default_num_ctx(settings: Settings, inventory: Inventory) -> int:
    """Ollama ≥0.15.5: OLLAMA_CONTEXT_LENGTH, else by total VRAM: ≥47 GiB 256k, ≥23 GiB 32k,
    else (CPU-only and small GPUs) 4096."""
    configured = settings.context_length
    if configured > 0:
        return configured
    vram = inventory.total_vram(settings.gpu_overhead)
    if vram >= 47 * GiB:
        return 262144
    if vram >= 23 * GiB:
        return 32768
    return 4096


def max_loaded_models(settings: Settings, inventory: Inventory) -> int:
    """OLLAMA_MAX_LOADED_MODELS; 0 = 3 per GPU (3 on a CPU-only host)."""
    n = settings.max_loaded_models
    return n if n > 0 else 3 * max(1, len(inventory.gpus))


def clamp_num_ctx(num_ctx: int, train_ctx: int, *, vision: bool = False) -> int:
    """Floors (4; 2048 for vision) and the model's training context as ceiling."""
    n = max(4, num_ctx)
    if vision:
        n = max(n, 2048)
    if train_ctx > 0:
        n = min(n, train_ctx)
    return n


def clamp_num_thread(n: int, inventory: Inventory) -> int:
    """0 = llama-server's default; otherwise at most one thread per logical CPU (more only
    oversubscribe: a request asking for 5000 made llama-server spin up 5000 threads and hang
    its load)."""
    if n <= 0:
        return 0
    return min(n, max(1, inventory.system.threads), GGML_MAX_THREADS)


def _opt_int(options: Mapping[str, Any], name: str) -> int | None:
    v = options.get(name)
    if v is None or isinstance(v, bool):
        return None
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def resolve_spec(model_path: Path, options: Mapping[str, Any], *, settings: Settings,
                 inventory: Inventory, facts: ModelFacts | None, embedding: bool = False,
                 projectors: Sequence[Path] = (), adapters: Sequence[Path] = (),
                 params: Mapping[str, Any] | None = None, jinja: bool = True,
                 rerank: bool = False) -> RunnerSpec:
    """The runner a request needs: model params <- request options for the load options."""
    merged: JsonObject = {k: v for k, v in (params or {}).items() if k in LOAD_OPTIONS}
    merged.update({k: v for k, v in options.items() if k in LOAD_OPTIONS and v is not None})
    train = facts.context_length if facts else 0
    num_ctx = _opt_int(merged, "num_ctx") or default_num_ctx(settings, inventory)
    num_ctx = clamp_num_ctx(num_ctx, train, vision=bool(projectors))
    emb_model = bool(facts and facts.embedding_model)
    parallel = max(1, settings.num_parallel)
    if emb_model or (facts and facts.architecture in SINGLE_SLOT_FAMILIES):
        parallel = 1
    batch = _opt_int(merged, "num_batch")
    num_gpu = _opt_int(merged, "num_gpu")
    mmap = merged.get("use_mmap")
    where = placement_request(merged, settings.rpc_workers)  # BadRequest in the request's task
    return RunnerSpec(
        model_path=Path(model_path),
        num_ctx=num_ctx,
        num_parallel=parallel,
        num_batch=batch if batch and batch > 0 else DEFAULT_BATCH,
        num_gpu=num_gpu if num_gpu is not None and num_gpu >= 0 else -1,
        main_gpu=_opt_int(merged, "main_gpu"),
        use_mmap=mmap if isinstance(mmap, bool) else None,
        num_thread=clamp_num_thread(_opt_int(merged, "num_thread") or 0, inventory),
        embedding=embedding or emb_model or rerank,
        projectors=tuple(Path(p) for p in projectors),
        adapters=tuple(Path(p) for p in adapters), jinja=jinja, rerank=rerank,
        placement=where.mode, rpc_workers=where.workers,
    )


def needs_reload(loaded: RunnerSpec, wanted: RunnerSpec) -> bool:
    """Ollama's needsReload: any runner option differs (automatic num_gpu matches anything; a
    runner started with --embeddings also serves completions)."""
    if loaded.model_path != wanted.model_path:
        return True
    if loaded.projectors != wanted.projectors or loaded.adapters != wanted.adapters:
        return True
    if wanted.embedding and not loaded.embedding:
        return True
    if wanted.jinja != loaded.jinja:  # the same GGUF under a RENDERER and under its Jinja
        return True
    if wanted.num_gpu >= 0 and wanted.num_gpu != loaded.num_gpu:
        return True
    # "auto" placement matches wherever the runner was placed; an explicit one must match.
    if wanted.placement != "auto" and (wanted.placement, wanted.rpc_workers) != (
            loaded.placement, loaded.rpc_workers):
        return True
    return (loaded.num_ctx, loaded.num_parallel, loaded.num_batch, loaded.main_gpu,
            loaded.use_mmap, loaded.num_thread) != (
        wanted.num_ctx, wanted.num_parallel, wanted.num_batch, wanted.main_gpu,
        wanted.use_mmap, wanted.num_thread)


@dataclass(frozen=True)
class RunnerView:
    """What eviction needs to know about one loaded runner."""

    key: str
    keep_alive: float
    refcount: int
    model_path: str


def pick_victim(runners: Sequence[RunnerView]) -> RunnerView | None:
    """Ollama's findRunnerToUnload: shortest keep_alive first (forever last), then path; the
    first idle one, else the first one (the caller waits for it to drain)."""
    if not runners:
        return None
    ordered = sorted(runners, key=lambda r: (sort_key(r.keep_alive), r.model_path))
    for r in ordered:
        if r.refcount == 0:
            return r
    return ordered[0]


def crash_backoff(recent_crashes: int) -> float:
    """Seconds to wait before loading a model whose runner keeps dying: none for the first
    crash, then 0.5 s doubling up to 30 s, so a crash loop never spins."""
    if recent_crashes <= 1:
        return 0.0
    return min(30.0, 0.5 * math.pow(2, recent_crashes - 2))


OOM_MARKERS = ("out of memory", "cudamalloc failed", "failed to allocate", "not enough memory",
               "unable to allocate", "erroroutofdevicememory")


def is_oom(message: str) -> bool:
    """Does a runner's error say it ran out of (device) memory?"""
    low = message.lower()
    return any(m in low for m in OOM_MARKERS)


def account_for_loaded(inv: Inventory, loaded: Sequence[Placement | None]) -> Inventory:
    """Free memory per GPU (and RAM) = min(reported free, total - what our loaded runners use),
    since a runner that just started may not show up in the driver's numbers yet."""
    used: dict[str, int] = {}
    ram = 0
    for placement in loaded:
        if placement is None:
            continue
        for g, size in zip(placement.gpus, placement.estimate.gpu_sizes, strict=False):
            used[g.id] = used.get(g.id, 0) + size
        # mmap'd weights count as reclaimable cache in "available" RAM: charge them here
        ram += placement.estimate.total_size - placement.estimate.vram_size
    gpus: list[GpuDevice] = [replace(g, free=max(0, min(g.free, g.total - used.get(g.id, 0))))
                             for g in inv.gpus]
    system = replace(inv.system, free=max(0, min(inv.system.free, inv.system.total - ram)))
    return replace(inv, gpus=tuple(gpus), system=system)


def fits(placement: Placement, inv: Inventory) -> bool:
    """May this model join the loaded ones? Fully on GPU, or (CPU) within free RAM."""
    if placement.gpus:
        return placement.estimate.fully_loaded
    return placement.estimate.total_size <= inv.system.free


def estimate_options(spec: RunnerSpec, settings: Settings) -> EstimateOptions:
    return EstimateOptions(
        num_ctx=spec.num_ctx, num_parallel=spec.num_parallel, num_batch=spec.num_batch,
        kv_cache_type=settings.kv_cache_type, flash_attention=settings.flash_attention != "off",
        num_gpu=spec.num_gpu, gpu_overhead=settings.gpu_overhead)


def wants_workers(spec: RunnerSpec, facts: ModelFacts | None, inv: Inventory,
                  settings: Settings) -> bool:
    """Does this load consult the RPC workers? Never for `placement local` or without workers;
    always when pinned (`placement workers` / `rpc_workers`); in auto only when the model does
    not fit this host's GPUs and RAM, by `plan_split`'s own test (a model that fits locally
    never touches a worker, and no load waits on worker queries whose answers go unused)."""
    if spec.placement == "local" or not spec.rpc_workers:
        return False
    if spec.placement == "workers":
        return True
    if facts is None:
        return False
    sizes, reserve = split_inputs(facts, spec, settings)
    return not fits_locally(sizes, inv.gpus, cpu_free=inv.system.free, reserve=reserve,
                            gpu_overhead=settings.gpu_overhead)


def split_inputs(facts: ModelFacts, spec: RunnerSpec, settings: Settings) -> tuple[list[int], int]:
    """(bytes per offloadable layer incl. its KV cache, compute reserve per device) as
    `plan_split` takes them, from the same estimate `place()` uses."""
    ctx = max(1, spec.num_ctx) * max(1, spec.num_parallel)
    batch = max(1, min(spec.num_ctx, spec.num_batch))
    cache_type = settings.kv_cache_type or "f16"
    if cache_type in QUANTIZED_KV and settings.flash_attention == "off":
        cache_type = "f16"
    kv = kv_cache(facts, ctx, batch, spec.num_parallel, cache_type)
    partial, _ = graph_size(facts, ctx, batch, sum(kv))
    return layer_sizes(facts.layer_bytes, kv, facts.output_bytes), partial


def unavailable(workers: Sequence[WorkerSpec], held: Mapping[str, str]) -> list[WorkerInfo]:
    """Workers another loaded runner holds (a worker serves one client): not queried (the query
    would only time out as busy), left out naming who holds them."""
    return [WorkerInfo(w, error=f"busy: held by the runner of {held[w.endpoint]}", busy=True)
            for w in workers if w.endpoint in held]


def split_plan(facts: ModelFacts, spec: RunnerSpec, inv: Inventory,
               workers: Sequence[WorkerInfo],
               settings: Settings) -> tuple[SplitPlan, list[DeviceShare]]:
    """Layers over local GPUs + the workers that answered + CPU, and the estimated size on
    each device (PlacementError naming the left-out workers when it does not fit)."""
    sizes, reserve = split_inputs(facts, spec, settings)
    plan = plan_split(sizes, inv.gpus, workers, mode=spec.placement, cpu_free=inv.system.free,
                      reserve=reserve, gpu_overhead=settings.gpu_overhead)
    return plan, device_shares(plan, sizes, reserve)


def device_shares(plan: SplitPlan, sizes: Sequence[int], reserve: int) -> list[DeviceShare]:
    """Where the model lives, for /api/ps: the CPU's leading layers, then each device's."""
    out: list[DeviceShare] = []
    if plan.cpu_layers:
        out.append(DeviceShare("CPU", "", plan.cpu_layers, sum(sizes[:plan.cpu_layers])))
    start = plan.cpu_layers
    for t, n in zip(plan.devices, plan.layers, strict=True):
        out.append(DeviceShare(t.name, t.endpoint, n, sum(sizes[start:start + n]) + reserve))
        start += n
    return out


@dataclass(frozen=True)
class DeviceShare:
    name: str  # CPU, CUDA0, RPC1, ...
    endpoint: str  # host:port of an RPC worker, "" for this host
    layers: int
    size: int  # estimated bytes (layers + KV + compute reserve)


def launch_config(spec: RunnerSpec, placement: Placement | None, inv: Inventory, *,
                  settings: Settings, gpu_backend: bool, embedding_model: bool, alias: str,
                  max_loaded: int, rpc: SplitPlan | None = None) -> LaunchConfig:
    """The llama-server launch for `spec`: layers from the request (num_gpu), else the
    placement, else (unknown model facts) None = let llama.cpp fit it; 0 without a GPU.
    A split over RPC workers (`rpc`) decides devices and layers itself."""
    layers: int | None = None
    if not inv.gpus:
        layers = 0
    elif spec.num_gpu >= 0:
        layers = spec.num_gpu
    elif placement is not None:
        layers = placement.n_gpu_layers
    main_gpu = spec.main_gpu
    split: tuple[int, ...] = ()
    if placement is not None and main_gpu is None:
        main_gpu = placement.main_gpu
        split = placement.tensor_split
    rpc_workers: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    if rpc is not None and rpc.uses_workers:
        rpc_workers = rpc.workers
        devices = tuple(t.name for t in rpc.devices)
        layers, split, main_gpu = rpc.n_gpu_layers, rpc.layers, None
    return LaunchConfig(
        model_path=spec.model_path, num_ctx=spec.num_ctx, num_parallel=spec.num_parallel,
        num_batch=spec.num_batch, n_gpu_layers=layers, tensor_split=split,
        gpu_backend=gpu_backend, main_gpu=main_gpu if inv.gpus else None,
        num_thread=spec.num_thread, flash_attention=settings.flash_attention,
        kv_cache_type=settings.kv_cache_type, use_mmap=spec.use_mmap, embedding=spec.embedding,
        embedding_model=embedding_model, projectors=spec.projectors, adapters=spec.adapters,
        alias=alias, cache_ram_mib=cache_ram_mib(inv.system.total, max_loaded),
        slots=settings.debug > 0,  # /slots shows every slot's prompt: only when debugging
        jinja=spec.jinja, rerank=spec.rerank, rpc_workers=rpc_workers, devices=devices,
    )
