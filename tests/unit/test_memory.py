"""The estimator on real model shapes against fake device inventories."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from ollamapy.placement.gpu import GiB, GpuDevice, Inventory, MiB, SystemInfo
from ollamapy.placement.memory import (
    EstimateOptions,
    ModelFacts,
    decision_fields,
    estimate,
    facts_from_metadata,
    place,
)


def shape_facts(arch: str, *, layers: int, emb: int, heads: int, heads_kv: int, ff: int,
                vocab: int, ctx: int, bpw: float, head_dim: int | None = None,
                tied: bool = False, sliding_window: int = 0) -> ModelFacts:
    """ModelFacts for a transformer of the given shape quantized to `bpw` bits per weight."""
    hd = head_dim or emb // heads
    per_layer = (emb * heads * hd + 2 * emb * heads_kv * hd + heads * hd * emb + 3 * emb * ff)
    layer_bytes = int(per_layer * bpw / 8) + 2 * emb * 4
    embd = int(vocab * emb * bpw / 8)
    return ModelFacts(
        architecture=arch, block_count=layers, context_length=ctx, embedding_length=emb,
        head_count=heads, head_count_kv=(heads_kv,) * layers, key_length=hd, value_length=hd,
        vocab_size=vocab, layer_bytes=(layer_bytes,) * layers,
        output_bytes=emb * 4 + embd, file_size=layers * layer_bytes + embd * (1 if tied else 2),
        sliding_window=sliding_window)


Q4_0, Q8_0 = 4.5, 8.5
LLAMA2_7B = shape_facts("llama", layers=32, emb=4096, heads=32, heads_kv=32, ff=11008,
                        vocab=32000, ctx=4096, bpw=Q4_0)
LLAMA3_8B = shape_facts("llama", layers=32, emb=4096, heads=32, heads_kv=8, ff=14336,
                        vocab=128256, ctx=8192, bpw=Q4_0)
LLAMA3_8B_Q8 = shape_facts("llama", layers=32, emb=4096, heads=32, heads_kv=8, ff=14336,
                           vocab=128256, ctx=8192, bpw=Q8_0)
LLAMA3_70B = shape_facts("llama", layers=80, emb=8192, heads=64, heads_kv=8, ff=28672,
                         vocab=128256, ctx=8192, bpw=Q4_0)
QWEN2_7B = shape_facts("qwen2", layers=28, emb=3584, heads=28, heads_kv=4, ff=18944,
                       vocab=152064, ctx=32768, bpw=Q4_0)
GEMMA_7B = shape_facts("gemma", layers=28, emb=3072, heads=16, heads_kv=16, ff=24576,
                       vocab=256000, ctx=8192, bpw=Q4_0, head_dim=256, tied=True)
GEMMA3_12B = shape_facts("gemma3", layers=48, emb=3840, heads=16, heads_kv=8, ff=15360,
                         vocab=262144, ctx=131072, bpw=Q4_0, head_dim=256, tied=True,
                         sliding_window=1024)

SYSTEM = SystemInfo(total=64 * GiB, free=48 * GiB, cores=8, threads=16)


def cuda(i: int, gib: float, free: float | None = None) -> GpuDevice:
    total = int(gib * GiB)
    return GpuDevice(index=i, id=f"GPU-{i}", library="cuda", name=f"RTX {i}", total=total,
                     free=int((free if free is not None else gib - 0.5) * GiB), compute="8.6")


ONE_24 = Inventory(SYSTEM, (cuda(0, 24),))
TWO_24 = Inventory(SYSTEM, (cuda(0, 24), cuda(1, 24)))
ONE_8 = Inventory(SYSTEM, (cuda(0, 8),))
APPLE_16 = Inventory(SystemInfo(total=16 * GiB, free=12 * GiB), (GpuDevice(
    index=0, id="metal", library="metal", name="Apple GPU", total=12 * GiB, free=12 * GiB),))
CPU_ONLY = Inventory(SYSTEM, ())


def opts(num_ctx: int = 4096, **kw) -> EstimateOptions:
    return EstimateOptions(num_ctx=num_ctx, **kw)


def test_kv_cache_sizes_match_the_formula():
    # ctx × (k + v) × heads_kv × 2 bytes × layers
    assert estimate(LLAMA3_8B, (), opts(4096)).kv_bytes == 4096 * 256 * 8 * 2 * 32 == 512 * MiB
    assert estimate(LLAMA2_7B, (), opts(4096)).kv_bytes == 2 * GiB  # no GQA: 4x llama3's
    assert estimate(QWEN2_7B, (), opts(32768)).kv_bytes == 32768 * 256 * 4 * 2 * 28
    assert estimate(GEMMA_7B, (), opts(8192)).kv_bytes == int(3.5 * GiB)  # 256-dim heads
    # parallel slots multiply the context
    assert estimate(LLAMA3_8B, (), opts(2048, num_parallel=4)).kv_bytes == 1 * GiB


def test_quantized_kv_needs_flash_attention():
    f16 = estimate(LLAMA3_8B, (), opts(8192)).kv_bytes
    q8 = estimate(LLAMA3_8B, (), opts(8192, kv_cache_type="q8_0")).kv_bytes
    q4 = estimate(LLAMA3_8B, (), opts(8192, kv_cache_type="q4_0")).kv_bytes
    assert q8 == pytest.approx(f16 * 34 / 64, rel=1e-6) and q4 < q8
    no_fa = estimate(LLAMA3_8B, (), opts(8192, kv_cache_type="q8_0", flash_attention=False))
    assert no_fa.kv_bytes == f16


def test_gemma3_sliding_layers_keep_a_small_cache():
    full = 32768 * 512 * 8 * 2  # one global layer at 32k
    e = estimate(GEMMA3_12B, (), opts(32768))
    assert e.kv_bytes < full * 48 / 4  # 40 of 48 layers only hold the 1024-token window
    assert e.kv_bytes > full * 8


def test_8b_fits_fully_on_one_24gb_gpu():
    p = place(LLAMA3_8B, ONE_24, opts(8192))
    e = p.estimate
    assert e.fully_loaded and p.n_gpu_layers == 33 == e.total_layers
    assert e.tensor_split == (33,) and p.tensor_split == () and p.main_gpu is None
    assert LLAMA3_8B.weights + e.kv_bytes < e.vram_size < 24 * GiB
    assert e.total_size == e.vram_size  # nothing left in system RAM


def test_8gb_gpu_partial_offload_for_a_bigger_quant():
    full = place(LLAMA3_8B, ONE_8, opts(4096))
    assert full.estimate.fully_loaded  # 4.5 bpw 8B + 512 MiB KV fits in 8 GB
    p = place(LLAMA3_8B_Q8, ONE_8, opts(8192))
    e = p.estimate
    assert not e.fully_loaded and 10 < e.layers < 33
    assert e.vram_size <= ONE_8.gpus[0].free
    assert e.total_size > e.vram_size  # the rest stays in RAM


def test_70b_partial_on_one_gpu_split_on_two():
    one = place(LLAMA3_70B, ONE_24, opts(4096)).estimate
    assert 0 < one.layers < 81 and one.vram_size <= ONE_24.gpus[0].free
    p = place(LLAMA3_70B, TWO_24, opts(4096))
    assert len(p.gpus) == 2 and p.estimate.layers > one.layers
    split = p.tensor_split
    assert len(split) == 2 and sum(split) == p.estimate.layers
    assert abs(split[0] - split[1]) <= 1  # equal GPUs get equal shares
    for size, g in zip(p.estimate.gpu_sizes, p.gpus, strict=True):
        assert size <= g.free


def test_uneven_gpus_split_in_proportion_to_free_memory():
    inv = Inventory(SYSTEM, (cuda(0, 24), cuda(1, 12)))
    p = place(LLAMA3_70B, inv, opts(4096))
    assert len(p.tensor_split) == 2 and p.tensor_split[0] > p.tensor_split[1] > 0


def test_small_model_uses_one_of_two_gpus_the_freer_one():
    inv = Inventory(SYSTEM, (cuda(0, 24, free=6), cuda(1, 24, free=20)))
    p = place(LLAMA3_8B, inv, opts(8192))
    assert [g.index for g in p.gpus] == [1] and p.estimate.fully_loaded
    assert p.main_gpu == 1  # --split-mode none --main-gpu 1
    spread = place(LLAMA3_8B, TWO_24, opts(8192), spread=True)
    assert len(spread.gpus) == 2 and spread.tensor_split == (17, 16)


def test_apple_unified_memory():
    p = place(LLAMA3_8B, APPLE_16, opts(8192))
    assert p.estimate.fully_loaded and p.gpus[0].library == "metal"
    assert p.estimate.graph_partial == p.estimate.graph_full  # Metal: one graph size
    big = place(LLAMA3_70B, APPLE_16, opts(4096))
    assert not big.estimate.fully_loaded


def test_cpu_only_and_num_gpu_zero():
    p = place(LLAMA3_8B, CPU_ONLY, opts(4096))
    assert p.gpus == () and p.n_gpu_layers == 0
    e = p.estimate
    assert e.vram_size == 0
    assert e.total_size >= LLAMA3_8B.weights + e.kv_bytes
    forced = place(LLAMA3_8B, ONE_24, opts(4096, num_gpu=0))
    assert forced.gpus == () and forced.n_gpu_layers == 0


def test_num_gpu_caps_layers_and_overhead_reduces_them():
    capped = place(LLAMA3_8B, ONE_24, opts(4096, num_gpu=10)).estimate
    assert capped.layers == 10 and not capped.fully_loaded
    base = place(LLAMA3_8B_Q8, ONE_8, opts(8192)).estimate.layers
    less = place(LLAMA3_8B_Q8, ONE_8, opts(8192, gpu_overhead=2 * GiB)).estimate.layers
    assert less < base


def test_gpu_too_small_for_anything_falls_back_to_cpu():
    tiny = Inventory(SYSTEM, (cuda(0, 1, free=0.6),))
    p = place(LLAMA3_8B, tiny, opts(4096))
    assert p.gpus == () and p.n_gpu_layers == 0


def test_unknown_architecture_uses_the_gqa_fallback():
    odd = replace(LLAMA3_8B, architecture="mystery")
    e = estimate(odd, (), opts(4096))
    assert e.graph_partial == (32 // 8) * e.kv_bytes // 6 == e.graph_full


def test_facts_from_metadata():
    kv = {
        "general.architecture": "llama", "llama.block_count": 2, "llama.context_length": 8192,
        "llama.embedding_length": 576, "llama.attention.head_count": 9,
        "llama.attention.head_count_kv": 3, "tokenizer.ggml.tokens": ["a"] * 100,
    }
    tensors = [("token_embd.weight", 1000), ("blk.0.attn_q.weight", 10),
               ("blk.0.ffn_up.weight", 20), ("blk.1.attn_q.weight", 30),
               ("output_norm.weight", 4)]
    f = facts_from_metadata(kv, tensors, 2000)
    assert f.block_count == 2 and f.layer_bytes == (30, 30)
    assert f.output_bytes == 1004  # tied: token_embd doubles as the output matrix
    assert f.head_count_kv == (3, 3) and f.key_length == 64 and f.vocab_size == 100
    assert not f.embedding_model
    per_layer = facts_from_metadata(
        {**kv, "llama.attention.head_count_kv": [3, 0], "llama.pooling_type": 1}, tensors)
    assert per_layer.head_count_kv == (3, 0) and per_layer.embedding_model


def test_facts_from_the_real_test_model(model_path: Path):
    from ollamapy.placement.memory import read_facts

    f = read_facts(model_path)
    assert f.architecture == "llama" and f.block_count == 30 and f.context_length == 8192
    assert f.embedding_length == 576 and f.head_count == 9 and f.head_count_kv == (3,) * 30
    assert 80 * MiB < f.weights <= f.file_size < 100 * MiB


def test_decision_fields_one_log_line():
    p = place(LLAMA3_8B, ONE_24, opts(8192))
    fields = decision_fields(p, opts(8192))
    assert fields["library"] == "cuda" and fields["layers.offload"] == 33
    assert fields["layers.model"] == 33 and fields["memory.required.kv"] == "1.0 GiB"


@pytest.mark.timeout(10)
@pytest.mark.parametrize(("kv", "tensors"), [
    ({"general.architecture": "llama", "llama.block_count": 1 << 40}, []),
    ({"general.architecture": "llama"}, [("blk.99999999999.attn_q.weight", 8)]),
])
def test_hostile_block_count_is_refused_not_allocated(kv, tensors):
    """A small GGUF claiming 2^40 layers must not make the scheduler build 2^40-entry tuples
    (llama.cpp itself refuses more than LLAMA_MAX_LAYERS = 512)."""
    with pytest.raises(ValueError, match="block count"):
        facts_from_metadata(kv, tensors, 100)
