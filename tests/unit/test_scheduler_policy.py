"""The scheduler's pure decisions."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ollamapy.config import load_settings
from ollamapy.keepalive import FOREVER
from ollamapy.placement.gpu import GiB, GpuDevice, Inventory, SystemInfo
from ollamapy.placement.memory import Estimate, ModelFacts, Placement
from ollamapy.scheduler.policy import (
    RunnerSpec,
    RunnerView,
    clamp_num_ctx,
    crash_backoff,
    default_num_ctx,
    max_loaded_models,
    needs_reload,
    pick_victim,
    resolve_spec,
)

SYSTEM = SystemInfo(total=64 * GiB, free=32 * GiB)
CPU = Inventory(SYSTEM)


def gpus(*sizes: float) -> Inventory:
    return Inventory(SYSTEM, tuple(GpuDevice(i, str(i), "cuda", "g", int(s * GiB), int(s * GiB))
                                   for i, s in enumerate(sizes)))


FACTS = ModelFacts(architecture="llama", block_count=30, context_length=8192,
                   embedding_length=576, head_count=9, head_count_kv=(3,) * 30, key_length=64,
                   value_length=64, vocab_size=49152, layer_bytes=(1,) * 30, output_bytes=1)


def test_default_num_ctx_tiers_and_override():
    s = load_settings({})
    assert default_num_ctx(s, CPU) == 4096
    assert default_num_ctx(s, gpus(8)) == 4096
    assert default_num_ctx(s, gpus(24)) == 32768
    assert default_num_ctx(s, gpus(24, 24)) == 262144
    assert default_num_ctx(load_settings({"OLLAMA_GPU_OVERHEAD": str(2 * GiB)}), gpus(24)) == 4096
    assert default_num_ctx(load_settings({"OLLAMA_CONTEXT_LENGTH": "8192"}), gpus(80)) == 8192


def test_max_loaded_models():
    assert max_loaded_models(load_settings({}), CPU) == 3
    assert max_loaded_models(load_settings({}), gpus(24, 24)) == 6
    assert max_loaded_models(load_settings({"OLLAMA_MAX_LOADED_MODELS": "1"}), gpus(24)) == 1


def test_clamp_num_ctx():
    assert clamp_num_ctx(100000, 8192) == 8192
    assert clamp_num_ctx(1, 8192) == 4
    assert clamp_num_ctx(512, 8192, vision=True) == 2048
    assert clamp_num_ctx(65536, 0) == 65536  # unknown training context: no ceiling


def test_resolve_spec_merges_params_and_request():
    s = load_settings({"OLLAMA_NUM_PARALLEL": "4"})
    spec = resolve_spec(Path("/m"), {"num_ctx": 100000, "temperature": 0.1}, settings=s,
                        inventory=CPU, facts=FACTS, params={"num_batch": 256, "num_ctx": 1024})
    assert spec.num_ctx == 8192  # request wins over params, then clamped to training ctx
    assert spec.num_batch == 256 and spec.num_parallel == 4 and spec.num_gpu == -1
    default = resolve_spec(Path("/m"), {}, settings=s, inventory=CPU, facts=FACTS,
                           params={"num_ctx": 1024})
    assert default.num_ctx == 1024
    emb = resolve_spec(Path("/m"), {}, settings=s, inventory=CPU,
                       facts=replace(FACTS, embedding_model=True))
    assert emb.embedding and emb.num_parallel == 1
    unknown = resolve_spec(Path("/m"), {"num_gpu": 0, "use_mmap": False, "num_thread": 3},
                           settings=s, inventory=CPU, facts=None)
    assert unknown.num_ctx == 4096 and unknown.num_gpu == 0
    assert unknown.use_mmap is False and unknown.num_thread == 1  # one logical CPU


def test_num_thread_is_capped_by_the_host():
    s = load_settings({})
    host = Inventory(replace(SYSTEM, cores=4, threads=8))

    def threads(n: object) -> int:
        return resolve_spec(Path("/m"), {"num_thread": n}, settings=s, inventory=host,
                            facts=FACTS).num_thread
    assert threads(3) == 3 and threads(0) == 0 and threads(-2) == 0
    assert threads(5000) == 8  # never thousands of threads in llama-server
    big = Inventory(replace(SYSTEM, threads=4096))
    assert resolve_spec(Path("/m"), {"num_thread": 5000}, settings=s, inventory=big,
                        facts=FACTS).num_thread == 512  # ggml's hard limit


def test_needs_reload_rules():
    base = RunnerSpec(model_path=Path("/m"), num_ctx=4096)
    assert not needs_reload(base, base)
    assert needs_reload(base, replace(base, num_ctx=2048))
    assert needs_reload(base, replace(base, num_batch=128))
    assert needs_reload(base, replace(base, use_mmap=False))
    assert needs_reload(base, replace(base, num_thread=2))
    assert needs_reload(base, replace(base, main_gpu=1))
    assert needs_reload(base, replace(base, adapters=(Path("/a"),)))
    assert needs_reload(base, replace(base, projectors=(Path("/p"),)))
    assert needs_reload(base, replace(base, embedding=True))
    assert not needs_reload(replace(base, embedding=True), base)
    assert needs_reload(base, replace(base, num_gpu=10))
    assert not needs_reload(replace(base, num_gpu=10), base)  # automatic matches anything


def test_pick_victim_idle_then_shortest_keep_alive():
    a = RunnerView("a", 300, 0, "/a")
    b = RunnerView("b", 60, 0, "/b")
    forever = RunnerView("f", FOREVER, 0, "/f")
    busy = RunnerView("busy", 0, 2, "/busy")
    assert pick_victim([a, b, forever]) == b
    assert pick_victim([forever, a]) == a
    assert pick_victim([busy, a]) == a  # an idle one before the busy one
    assert pick_victim([busy, replace(a, refcount=1)]) == busy  # all busy: shortest, and wait
    assert pick_victim([]) is None


def test_crash_backoff():
    assert [crash_backoff(n) for n in (0, 1, 2, 3, 4)] == [0.0, 0.0, 0.5, 1.0, 2.0]
    assert crash_backoff(50) == 30.0


def test_runner_variant_follows_the_hardware(tmp_path: Path):
    import json

    from ollamapy.runner.locate import pick_runner

    for variant in ("cpu", "cuda", "rocm"):
        d = tmp_path / variant / "bin"
        d.mkdir(parents=True)
        (d / "llama-server").write_text("#!/bin/sh\n")
        (d / "llama-server").chmod(0o755)
        (tmp_path / variant / "manifest.json").write_text(json.dumps({"variant": variant}))
    env = {"OLLAMAPY_RUNNERS": str(tmp_path), "PATH": ""}
    assert pick_runner("", env, libraries=[]).variant == "cpu"  # no GPU: the CUDA build is no use
    assert pick_runner("", env, libraries=["cuda"]).variant == "cuda"
    assert pick_runner("", env, libraries=["rocm"]).variant == "rocm"
    assert pick_runner("cpu", env, libraries=["cuda"]).variant == "cpu"  # OLLAMA_LLM_LIBRARY


def _placement(gpu_list: tuple[GpuDevice, ...], sizes: tuple[int, ...], total: int,
               layers: int = 31) -> Placement:

    est = Estimate(layers=layers, total_layers=31, gpu_sizes=sizes, tensor_split=(layers,),
                   kv_bytes=0, graph_full=0, graph_partial=0, weights=total, total_size=total,
                   gpus=gpu_list)
    return Placement(gpus=gpu_list, estimate=est)


def test_oom_markers():
    from ollamapy.scheduler.policy import is_oom

    assert is_oom("CUDA error: out of memory") and is_oom("ggml: cudaMalloc failed")
    assert not is_oom("GGML_ASSERT failed")


def test_loaded_runners_are_charged_against_free_memory():
    from ollamapy.scheduler.policy import account_for_loaded, fits

    inv = gpus(24)
    g = inv.gpus[0]
    on_gpu = _placement((g,), (10 * GiB,), 12 * GiB)  # 10 GiB VRAM + 2 GiB RAM
    after = account_for_loaded(inv, [on_gpu, None])
    assert after.gpus[0].free == 14 * GiB  # the driver's free (24) said more: min wins
    assert after.system.free == 32 * GiB  # total 64 - 2 GiB charged > free 32
    on_cpu = _placement((), (), 40 * GiB, layers=0)
    assert not fits(on_cpu, CPU) and fits(_placement((), (), 8 * GiB, layers=0), CPU)


def test_launch_config_layers():
    from ollamapy.scheduler.policy import launch_config

    s = load_settings({"OLLAMA_FLASH_ATTENTION": "1", "OLLAMA_KV_CACHE_TYPE": "q8_0"})
    spec = RunnerSpec(model_path=Path("/m"), num_ctx=4096)
    cfg = launch_config(spec, None, CPU, settings=s, gpu_backend=False, embedding_model=False,
                        alias="m", max_loaded=3)
    assert cfg.n_gpu_layers == 0 and cfg.main_gpu is None  # no GPU: nothing offloaded
    assert cfg.flash_attention == "on" and cfg.kv_cache_type == "q8_0" and cfg.alias == "m"
    inv = gpus(24)
    cfg = launch_config(spec, None, inv, settings=s, gpu_backend=True, embedding_model=False,
                        alias="m", max_loaded=3)
    assert cfg.n_gpu_layers is None  # unknown facts: llama.cpp fits it
    p = _placement(inv.gpus, (GiB,), GiB, layers=12)
    cfg = launch_config(spec, p, inv, settings=s, gpu_backend=True, embedding_model=False,
                        alias="m", max_loaded=3)
    assert cfg.n_gpu_layers == 12
    cfg = launch_config(replace(spec, num_gpu=5), p, inv, settings=s, gpu_backend=True,
                        embedding_model=False, alias="m", max_loaded=3)
    assert cfg.n_gpu_layers == 5  # the request's num_gpu wins
