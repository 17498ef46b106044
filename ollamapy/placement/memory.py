"""Pure memory estimate: GGUF facts + devices + options -> GPU layers, tensor split, sizes.

This follows Ollama's classic estimator (llm/memory.go + fs/ggml GraphSize, see the spec §5.3):
KV cache per layer for the requested context, per-architecture compute-graph sizes, a per-GPU
reserve, then layers placed on GPUs one by one while they fit, the output layer last. Only
`facts_from_gguf` knows the GGUF reader; everything else works on `ModelFacts`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ollamapy.placement.gpu import GiB, GpuDevice, Inventory, MiB

# Bytes per element of the KV cache for OLLAMA_KV_CACHE_TYPE (ggml block sizes).
KV_BYTES = {
    "f32": 4.0, "f16": 2.0, "bf16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32, "q4_1": 20 / 32,
    "iq4_nl": 18 / 32, "q5_0": 22 / 32, "q5_1": 24 / 32,
}
QUANTIZED_KV = frozenset(KV_BYTES) - {"f32", "f16", "bf16"}

LLAMA_LIKE = frozenset({"llama", "llama4", "mistral", "mistral3", "granite", "smollm3"})
QWEN_LIKE = frozenset({"qwen2", "qwen3", "qwen2moe", "qwen3moe"})
GEMMA_LIKE = frozenset({"gemma", "gemma2", "gemma3", "gemma3n"})
MAX_LAYERS = 512  # llama.cpp's LLAMA_MAX_LAYERS


@dataclass(frozen=True)
class ModelFacts:
    """What the estimator needs to know about a model, read once from its GGUF."""

    architecture: str
    block_count: int
    context_length: int  # training context (0 = unknown)
    embedding_length: int
    head_count: int  # max over layers
    head_count_kv: tuple[int, ...]  # per layer; len == block_count
    key_length: int
    value_length: int
    vocab_size: int
    layer_bytes: tuple[int, ...]  # weights of blk.i
    output_bytes: int  # output_norm + output (or token_embd when the embedding is tied)
    file_size: int = 0
    sliding_window: int = 0
    embedding_model: bool = False  # has pooling: served with --embeddings
    projector_bytes: int = 0  # vision projector weights (charged to the first GPU)

    @property
    def weights(self) -> int:
        return sum(self.layer_bytes) + self.output_bytes

    @property
    def head_count_kv_max(self) -> int:
        return max(self.head_count_kv, default=0)

    @property
    def head_count_kv_min(self) -> int:
        nonzero = [h for h in self.head_count_kv if h > 0]
        return min(nonzero, default=0)


def _ints(value: Any, n: int, default: int) -> tuple[int, ...]:
    if isinstance(value, list | tuple):
        vals = [int(v) for v in value if isinstance(v, int | float)]
        vals = (vals + [vals[-1] if vals else default] * n)[:n]
        return tuple(vals)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (int(value),) * n
    return (default,) * n


def _int(value: Any, default: int = 0) -> int:
    if isinstance(value, list | tuple):
        nums = [int(v) for v in value if isinstance(v, int | float)]
        return max(nums, default=default)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    return default


_BLK = re.compile(r"^blk\.(\d+)\.")


def facts_from_metadata(kv: Mapping[str, Any], tensors: Iterable[tuple[str, int]],
                        file_size: int = 0) -> ModelFacts:
    """Reader-independent: GGUF metadata dict + (tensor name, byte size) pairs -> ModelFacts."""
    arch = str(kv.get("general.architecture") or "unknown")

    def a(key: str, default: Any = None) -> Any:
        return kv.get(f"{arch}.{key}", default)

    sizes: dict[str, int] = {}
    blocks: dict[int, int] = {}
    for name, nbytes in tensors:
        m = _BLK.match(name)
        if m:
            i = int(m.group(1))
            blocks[i] = blocks.get(i, 0) + int(nbytes)
        else:
            sizes[name] = sizes.get(name, 0) + int(nbytes)
    block_count = _int(a("block_count"), 0) or (max(blocks) + 1 if blocks else 0)
    if not 0 <= block_count <= MAX_LAYERS:  # a hostile file: never size tuples by it
        raise ValueError(f"invalid GGUF: block count {block_count} (llama.cpp allows at most "
                         f"{MAX_LAYERS})")
    layer_bytes = tuple(blocks.get(i, 0) for i in range(block_count))
    output = sizes.get("output_norm.weight", 0) + sizes.get("output_norm.bias", 0)
    if "output.weight" in sizes:
        output += sizes["output.weight"]
    else:  # tied embeddings: the output matrix is token_embd
        output += sizes.get("token_embd.weight", 0)
    emb = _int(a("embedding_length"), 0)
    heads = _int(a("attention.head_count"), 0)
    heads_kv = _ints(a("attention.head_count_kv", a("attention.head_count")), block_count,
                     heads)
    head_dim = emb // heads if heads else 0
    tokens = kv.get("tokenizer.ggml.tokens")
    vocab = len(tokens) if tokens is not None and hasattr(tokens, "__len__") else 0
    vocab = vocab or _int(a("vocab_size"), 0)
    return ModelFacts(
        architecture=arch,
        block_count=block_count,
        context_length=_int(a("context_length"), 0),
        embedding_length=emb,
        head_count=heads,
        head_count_kv=heads_kv,
        key_length=_int(a("attention.key_length"), head_dim),
        value_length=_int(a("attention.value_length"), head_dim),
        vocab_size=vocab,
        layer_bytes=layer_bytes,
        output_bytes=output,
        file_size=file_size,
        sliding_window=_int(a("attention.sliding_window"), 0),
        embedding_model=f"{arch}.pooling_type" in kv,
    )


def facts_from_gguf(g: Any) -> ModelFacts:
    """Adapter for `ollamapy.gguf.GGUFFile` (the store's bounded reader)."""
    return facts_from_metadata(g.kv, ((t.name, t.n_bytes) for t in g.tensors),
                               int(getattr(g, "file_size", 0) or 0))


def read_facts(path: Any, projectors: Sequence[Any] = ()) -> ModelFacts:
    """Facts for a model file on disk (+ the weight bytes of its projector files)."""
    from dataclasses import replace

    from ollamapy.gguf import read_gguf

    facts = facts_from_gguf(read_gguf(path))
    proj = 0
    for p in projectors:
        try:
            proj += sum(t.n_bytes for t in read_gguf(p).tensors)
        except (OSError, ValueError):
            continue
    return replace(facts, projector_bytes=proj) if proj else facts


# ---------------------------------------------------------------- the estimate


@dataclass(frozen=True)
class EstimateOptions:
    num_ctx: int
    num_parallel: int = 1
    num_batch: int = 512
    kv_cache_type: str = "f16"
    flash_attention: bool = True
    num_gpu: int = -1  # -1 = as many layers as fit
    gpu_overhead: int = 0  # OLLAMA_GPU_OVERHEAD bytes per GPU


@dataclass(frozen=True)
class Estimate:
    layers: int  # layers offloaded (block_count + 1 with the output layer = everything)
    total_layers: int
    gpu_sizes: tuple[int, ...]  # bytes allocated per GPU (same order as the GPUs given)
    tensor_split: tuple[int, ...]  # layers per GPU
    kv_bytes: int
    graph_full: int
    graph_partial: int
    weights: int
    total_size: int  # bytes in VRAM + system RAM
    gpus: tuple[GpuDevice, ...] = field(default_factory=tuple)

    @property
    def vram_size(self) -> int:
        return sum(self.gpu_sizes)

    @property
    def fully_loaded(self) -> bool:
        return self.layers >= self.total_layers and self.total_layers > 0


def kv_cache(facts: ModelFacts, ctx: int, batch: int, num_parallel: int,
             cache_type: str) -> tuple[int, ...]:
    """KV cache bytes per layer for `ctx` total cells (num_ctx × num_parallel)."""
    bpe = KV_BYTES.get(cache_type, 2.0)
    per_head = facts.key_length + facts.value_length
    out = []
    swa = facts.architecture == "gemma3" and facts.sliding_window > 0
    sliding_cells = num_parallel * facts.sliding_window + batch
    for i, hkv in enumerate(facts.head_count_kv):
        cells = ctx
        if swa and (i + 1) % 6 != 0:  # 5 of every 6 gemma3 layers are sliding-window
            cells = min(ctx, sliding_cells)
        out.append(int(cells * per_head * hkv * bpe))
    return tuple(out)


def graph_size(facts: ModelFacts, ctx: int, batch: int, kv_total: int) -> tuple[int, int]:
    """(partial, full) compute-graph bytes: Ollama's per-architecture formulas."""
    emb, heads, vocab = facts.embedding_length, facts.head_count, facts.vocab_size
    heads_kv = facts.head_count_kv_max
    head_k = facts.key_length
    head_dim = emb // heads if heads else 0
    arch = facts.architecture
    full = partial = 0
    if arch in LLAMA_LIKE:
        full = max(4 * batch * (1 + 4 * emb + ctx * (1 + heads)), 4 * batch * (emb + vocab))
        partial = 4 * batch * emb + max(
            4 * batch * (1 + emb + max(ctx, emb)) + emb * emb * 9 // 16
            + 4 * ctx * (batch * heads + head_dim * heads_kv),
            4 * batch * (emb + vocab) + emb * vocab * 105 // 128,
        )
    elif arch in GEMMA_LIKE:
        full = max(4 * batch * (emb + vocab),
                   4 * batch * (2 + ctx + ctx * heads + 2 * emb + 2 * head_k * heads))
        partial = max(
            4 * emb * batch + emb * vocab * 105 // 128 + 4 * vocab * batch,
            4 * batch * (2 * emb + 1 + 2 * head_k * heads + ctx + ctx * heads)
            + 4 * head_k * ctx * 8 + emb * head_k * heads * 9 // 16,
        )
        if arch == "gemma3n":
            full, partial = full * 4, partial * 4
    elif arch in QWEN_LIKE:
        full = max(4 * batch * (emb + vocab), 4 * batch * (1 + 2 * emb + ctx + ctx * heads))
        partial = max(4 * batch * (emb + vocab) + emb * vocab * 105 // 128,
                      4 * (batch * (1 + 2 * emb + ctx * (1 + heads)) + emb * (1 + ctx)))
    if partial == 0:  # unknown architecture: Ollama's GQA-based fallback
        hkv = facts.head_count_kv_min or 1
        partial = (heads // hkv if heads else 1) * kv_total // 6
    if full == 0:
        full = partial
    return partial, full


def estimate(facts: ModelFacts, gpus: Sequence[GpuDevice], opts: EstimateOptions) -> Estimate:
    """Place layers on `gpus` (all of one library) the way Ollama's EstimateGPULayers does."""
    ctx = max(1, opts.num_ctx) * max(1, opts.num_parallel)
    batch = max(1, min(opts.num_ctx, opts.num_batch))
    cache_type = opts.kv_cache_type
    if cache_type in QUANTIZED_KV and not opts.flash_attention:
        cache_type = "f16"  # a quantized V cache needs flash attention; llama.cpp would refuse
    kv = kv_cache(facts, ctx, batch, opts.num_parallel, cache_type)
    kv_total = sum(kv)
    partial, full = graph_size(facts, ctx, batch, kv_total)
    if gpus and gpus[0].library == "metal":
        partial = full
    elif len(gpus) > 1:
        full = partial
    total_layers = facts.block_count + 1
    n = len(gpus)
    alloc = [0] * n
    counts = [0] * n
    overhead = opts.gpu_overhead
    layer_size = (facts.layer_bytes[0] if facts.layer_bytes else 0) + (kv[0] if kv else 0)
    graph = max(partial, full)
    usable: list[int] = []
    if opts.num_gpu != 0:
        for i, g in enumerate(gpus):
            first = facts.projector_bytes if not usable else 0
            if g.free < overhead + first + graph + g.minimum_memory + 2 * layer_size:
                continue
            usable.append(i)
            alloc[i] += g.minimum_memory + layer_size
        if usable:
            alloc[usable[0]] += facts.projector_bytes
    limit = opts.num_gpu if opts.num_gpu >= 0 else total_layers
    placed = 0
    overflow = 0
    for li in range(facts.block_count):
        size = facts.layer_bytes[li] + kv[li]
        if placed >= limit or not usable:
            overflow += size
            continue
        done = False
        for j in range(len(usable), 0, -1):
            k = li % j
            gi = usable[k]
            if gpus[gi].free > overhead + alloc[gi] + graph + size:
                alloc[gi] += size
                counts[gi] += 1
                placed += 1
                done = True
                break
            usable.pop(k)
        if not done:
            overflow += size
    # The output layer goes last, only once every block is on a GPU.
    if placed >= facts.block_count and usable and placed < limit:
        for j in range(len(usable), 0, -1):
            gi = usable[placed % j]
            if gpus[gi].free > overhead + alloc[gi] + graph + facts.output_bytes:
                alloc[gi] += facts.output_bytes
                counts[gi] += 1
                placed += 1
                break
    fully = placed >= total_layers
    if not fully:
        overflow += facts.output_bytes
    for i in range(n):
        if counts[i] > 0:
            alloc[i] += full if fully else partial
        else:
            alloc[i] = 0  # a GPU that got no layer is not used at all
    vram = sum(alloc)
    cpu_graph = 0 if fully else (full if not any(counts) else 0)
    weights = facts.weights + facts.projector_bytes
    return Estimate(
        layers=placed, total_layers=total_layers, gpu_sizes=tuple(alloc),
        tensor_split=tuple(counts), kv_bytes=kv_total, graph_full=full, graph_partial=partial,
        weights=weights, total_size=vram + overflow + cpu_graph, gpus=tuple(gpus),
    )


@dataclass(frozen=True)
class Placement:
    """Which GPUs a runner uses and how many layers go there (the flags' input)."""

    gpus: tuple[GpuDevice, ...]
    estimate: Estimate
    device_count: int = 0  # GPUs of this library the runner will see

    @property
    def n_gpu_layers(self) -> int:
        return self.estimate.layers if self.gpus else 0

    def _used(self) -> list[tuple[GpuDevice, int]]:
        return [(g, c) for g, c in zip(self.gpus, self.estimate.tensor_split, strict=False) if c]

    @property
    def tensor_split(self) -> tuple[int, ...]:
        """Layers per visible device (by runner index), only when more than one GPU is used."""
        used = self._used()
        if len(used) < 2:
            return ()
        split = [0] * max(self.device_count, max(g.index for g, _ in used) + 1)
        for g, c in used:
            split[g.index] = c
        return tuple(split)

    @property
    def main_gpu(self) -> int | None:
        """The device index when everything sits on one GPU of several (split-mode none)."""
        used = self._used()
        if len(used) == 1 and self.device_count > 1:
            return used[0][0].index
        return None


def place(facts: ModelFacts, inventory: Inventory, opts: EstimateOptions, *,
          spread: bool = False, main_gpu: int | None = None) -> Placement:
    """Pick devices: the fewest GPUs of one library (most free memory first) that hold the whole
    model; otherwise the placement that offloads the most layers; CPU when nothing fits."""
    cpu = Placement((), estimate(facts, (), opts))
    if inventory.cpu_only or opts.num_gpu == 0:
        return cpu
    best: Placement | None = None
    for lib in inventory.libraries():
        devs = sorted((g for g in inventory.gpus if g.library == lib), key=lambda g: -g.free)
        count = len(devs)
        if main_gpu is not None:
            devs = [g for g in devs if g.index == main_gpu] or devs[:1]
        sizes = [len(devs)] if spread else list(range(1, len(devs) + 1))
        for n in sizes:
            subset = tuple(sorted(devs[:n], key=lambda g: g.index))
            p = Placement(subset, estimate(facts, subset, opts), count)
            if p.estimate.fully_loaded:
                return p
            if best is None or (p.estimate.layers, -len(subset)) > (best.estimate.layers,
                                                                       -len(best.gpus)):
                best = p
    if best is None or best.estimate.layers == 0:
        return cpu
    return best


def decision_fields(p: Placement, opts: EstimateOptions) -> dict[str, object]:
    """The one log line Ollama prints for an offload decision (`offload to cuda ...`)."""
    e = p.estimate

    def fmt(n: int) -> str:
        return f"{n / GiB:.1f} GiB" if n >= GiB else f"{n / MiB:.1f} MiB"

    return {
        "library": p.gpus[0].library if p.gpus else "cpu",
        "layers.requested": opts.num_gpu,
        "layers.model": e.total_layers,
        "layers.offload": p.n_gpu_layers,
        "layers.split": ",".join(str(c) for c in e.tensor_split) or "[]",
        "memory.available": "[" + ",".join(fmt(g.free) for g in p.gpus) + "]",
        "memory.gpu_overhead": fmt(opts.gpu_overhead),
        "memory.required.full": fmt(e.total_size if not p.gpus else
                                    e.weights + e.kv_bytes + e.graph_full),
        "memory.required.partial": fmt(e.vram_size),
        "memory.required.kv": fmt(e.kv_bytes),
        "memory.required.allocations": "[" + ",".join(fmt(s) for s in e.gpu_sizes) + "]",
        "memory.weights.total": fmt(e.weights),
        "memory.graph.full": fmt(e.graph_full),
        "memory.graph.partial": fmt(e.graph_partial),
    }
