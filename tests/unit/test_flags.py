from pathlib import Path

import pytest

from ollamapy.runner.flags import LaunchConfig, build_args, cache_ram_mib


def opt(args: list[str], flag: str) -> str | None:
    """The value following `flag`, or None when the flag is absent."""
    return args[args.index(flag) + 1] if flag in args else None


def test_minimal_cpu_launch():
    args = build_args(LaunchConfig(model_path=Path("/m/blob"), num_ctx=4096, n_gpu_layers=0,
                                   alias="smollm2:135m", cache_ram_mib=1024))
    assert args[:2] == ["--model", "/m/blob"]
    for flag in ("--jinja", "--no-ui", "--offline", "--metrics", "--context-shift"):
        assert flag in args
    assert opt(args, "-c") == "4096" and opt(args, "-np") == "1"
    assert opt(args, "-b") == "512" and opt(args, "-ub") == "512"
    assert opt(args, "--n-gpu-layers") == "0"
    assert opt(args, "--fit") == "off"  # -ngl and -c both pinned: skip the dry run
    assert opt(args, "--alias") == "smollm2:135m"
    assert opt(args, "--cache-ram") == "1024"
    assert opt(args, "--flash-attn") == "auto"
    assert "--embeddings" not in args and "--cache-type-k" not in args
    assert "--host" not in args and "--port" not in args  # added at spawn time


def test_context_is_per_slot_times_parallel():
    args = build_args(LaunchConfig(model_path=Path("m"), num_ctx=2048, num_parallel=4))
    assert opt(args, "-c") == "8192" and opt(args, "-np") == "4"


def test_cpu_only_runner_build_gets_no_layer_flags():
    args = build_args(LaunchConfig(model_path=Path("m"), num_ctx=2048, n_gpu_layers=0,
                                   gpu_backend=False))
    assert "--n-gpu-layers" not in args and opt(args, "--fit") == "off"


def test_auto_layers_leave_fit_on():
    args = build_args(LaunchConfig(model_path=Path("m"), num_ctx=2048, n_gpu_layers=None))
    assert "--n-gpu-layers" not in args and "--fit" not in args


def test_gpu_split_and_single_gpu():
    args = build_args(LaunchConfig(model_path=Path("m"), num_ctx=8192, n_gpu_layers=81,
                                   tensor_split=(40, 41)))
    assert opt(args, "--n-gpu-layers") == "81"
    assert opt(args, "--tensor-split") == "40,41"
    assert "--split-mode" not in args
    one = build_args(LaunchConfig(model_path=Path("m"), num_ctx=8192, n_gpu_layers=33,
                                  main_gpu=1, tensor_split=(0, 33)))
    assert opt(one, "--split-mode") == "none" and opt(one, "--main-gpu") == "1"
    assert "--tensor-split" not in one


def test_kv_cache_type_needs_flash_attention():
    q = build_args(LaunchConfig(model_path=Path("m"), num_ctx=2048, kv_cache_type="q8_0",
                                flash_attention="on"))
    assert opt(q, "--cache-type-k") == "q8_0" and opt(q, "--cache-type-v") == "q8_0"
    assert opt(q, "--flash-attn") == "on"
    off = build_args(LaunchConfig(model_path=Path("m"), num_ctx=2048, kv_cache_type="q4_0",
                                  flash_attention="off"))
    assert "--cache-type-k" not in off  # llama-server would exit 1: fall back to f16
    assert opt(off, "--flash-attn") == "off"


def test_embeddings_batch_and_pooling():
    gen = build_args(LaunchConfig(model_path=Path("m"), num_ctx=256, num_batch=512,
                                  embedding=True))
    assert "--embeddings" in gen
    assert opt(gen, "-b") == "256" and opt(gen, "-ub") == "256"  # min(num_batch, ctx)
    assert opt(gen, "--pooling") == "mean"
    assert "--context-shift" not in gen
    emb = build_args(LaunchConfig(model_path=Path("m"), num_ctx=8192, embedding=True,
                                  embedding_model=True))
    assert "--pooling" not in emb and opt(emb, "-ub") == "512"


def test_projector_adapters_threads_mmap():
    args = build_args(LaunchConfig(
        model_path=Path("m"), num_ctx=4096, projectors=(Path("p1"), Path("p2")),
        adapters=(Path("a1"), Path("a2")), num_thread=6, use_mmap=False))
    assert opt(args, "--mmproj") == "p1" and args.count("--mmproj") == 1
    assert [args[i + 1] for i, a in enumerate(args) if a == "--lora"] == ["a1", "a2"]
    assert opt(args, "-t") == "6" and opt(args, "-tb") == "6"
    assert opt(args, "--load-mode") == "none"
    assert "--context-shift" not in args  # multimodal caches can't shift
    mm = build_args(LaunchConfig(model_path=Path("m"), num_ctx=4096, use_mmap=True))
    assert opt(mm, "--load-mode") == "mmap"


def test_rejects_nonsense():
    with pytest.raises(ValueError):
        build_args(LaunchConfig(model_path=Path("m"), num_ctx=0))


def test_cache_ram_cap():
    gib = 1024**3
    assert cache_ram_mib(24 * gib, 3) == 819
    assert cache_ram_mib(1024 * gib, 1) == 8192  # never above llama-server's own default
    assert cache_ram_mib(0, 3) == 0


def test_slots_endpoint_off_unless_debugging():
    """/slots shows every slot's prompt and output: off by default, on for OLLAMA_DEBUG."""
    assert "--no-slots" in build_args(LaunchConfig(model_path=Path("m"), num_ctx=2048))
    args = build_args(LaunchConfig(model_path=Path("m"), num_ctx=2048, slots=True))
    assert "--no-slots" not in args and "--slots" in args


def test_no_secret_on_the_command_line():
    """argv is world-readable (/proc/<pid>/cmdline): the key travels in the environment."""
    args = build_args(LaunchConfig(model_path=Path("m"), num_ctx=2048))
    assert "--api-key" not in args and "--api-key-file" not in args


def test_runner_allows_no_browser_origin():
    """ollamapy talks to its runners server-side: no web page may read a runner's answers
    (llama-server's default `*` lets any page read /health and probe the port)."""
    args = build_args(LaunchConfig(model_path=Path("m"), num_ctx=2048))
    assert opt(args, "--cors-origins") == "http://ollamapy.invalid"
