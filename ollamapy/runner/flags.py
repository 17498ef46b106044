"""Pure: what one runner launch needs -> llama-server argv (host/port are added at spawn time).

Every setting reaches llama-server as an explicit flag (the child's LLAMA_ARG_* environment is
scrubbed), so this function is the single place that decides the runner's command line. Never
a secret here: argv is world-readable; the runner's API key travels in its environment.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

QUANTIZED_KV = frozenset({"q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1"})
DEFAULT_CACHE_RAM_MIB = 8192
RUNNER_CORS_ORIGIN = "http://ollamapy.invalid"


@dataclass(frozen=True)
class LaunchConfig:
    model_path: Path
    num_ctx: int  # per slot; -c is num_ctx × num_parallel
    num_parallel: int = 1
    num_batch: int = 512
    n_gpu_layers: int | None = None  # None: leave it to llama.cpp (--fit decides)
    gpu_backend: bool = True  # False for a CPU-only runner build: no layer flags at all
    tensor_split: tuple[int, ...] = ()
    main_gpu: int | None = None  # one GPU of several: --split-mode none --main-gpu N
    num_thread: int = 0  # 0: llama-server's default (physical cores)
    flash_attention: str = "auto"  # on | off | auto
    kv_cache_type: str = "f16"
    use_mmap: bool | None = None
    embedding: bool = False  # --embeddings
    embedding_model: bool = False  # the GGUF has its own pooling (a real embedding model)
    projectors: tuple[Path, ...] = ()
    adapters: tuple[Path, ...] = ()
    alias: str = ""
    cache_ram_mib: int | None = None
    context_shift: bool = True
    # False when ollamapy renders the chat itself (RENDERER/PARSER/Go TEMPLATE): llama-server
    # then must not parse the GGUF's unused Jinja template (Ollama: --no-jinja + chatml)
    jinja: bool = True
    rerank: bool = False  # --rerank: pooling rank + the /v1/rerank endpoint
    log_verbosity: int = 4  # 4 prints the buffer sizes /api/ps reports
    slots: bool = False  # /slots shows every slot's prompt: only when debugging (OLLAMA_DEBUG)
    # A split over RPC workers (placement.rpc.SplitPlan): --rpc endpoints, and the --device list
    # that `tensor_split` (layers per device) and `n_gpu_layers` refer to.
    rpc_workers: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()


def kv_cache_type(cfg: LaunchConfig) -> str:
    """The cache type actually used: a quantized cache needs flash attention, else f16."""
    t = cfg.kv_cache_type or "f16"
    if t in QUANTIZED_KV and cfg.flash_attention == "off":
        return "f16"
    return t


def build_args(cfg: LaunchConfig) -> list[str]:
    """llama-server arguments for `cfg`: --jinja (or --no-jinja with a placeholder template),
    always --no-ui --offline --metrics, explicit -c/-np."""
    if cfg.num_ctx < 1 or cfg.num_parallel < 1:
        raise ValueError("num_ctx and num_parallel must be >= 1")
    args = ["--model", str(cfg.model_path)]
    args += ["--jinja"] if cfg.jinja else ["--no-jinja", "--chat-template", "chatml"]
    # --metrics: /metrics in Prometheus format, re-exported by ollamapy's own /metrics.
    args += ["--no-ui", "--offline", "--metrics"]
    if cfg.alias:
        args += ["--alias", cfg.alias]
    args += ["-c", str(cfg.num_ctx * cfg.num_parallel), "-np", str(cfg.num_parallel)]
    if cfg.embedding:
        batch = max(1, min(cfg.num_batch, cfg.num_ctx * cfg.num_parallel))
        args += ["--rerank" if cfg.rerank else "--embeddings", "-b", str(batch), "-ub",
                 str(batch)]
        if not cfg.embedding_model and not cfg.rerank:
            args += ["--pooling", "mean"]  # a causal LM has no pooling head of its own
    elif cfg.num_batch > 0:
        args += ["-b", str(cfg.num_batch), "-ub", str(cfg.num_batch)]
    if cfg.num_thread > 0:
        args += ["-t", str(cfg.num_thread), "-tb", str(cfg.num_thread)]
    args += ["--flash-attn", cfg.flash_attention if cfg.flash_attention in ("on", "off")
             else "auto"]
    ctype = kv_cache_type(cfg)
    if ctype != "f16":
        args += ["--cache-type-k", ctype, "--cache-type-v", ctype]
    if cfg.use_mmap is False:
        args += ["--load-mode", "none"]
    elif cfg.use_mmap is True:
        args += ["--load-mode", "mmap"]
    if cfg.rpc_workers:
        # Our split is the decision (also on a CPU-only build: the workers are its devices);
        # llama.cpp's fit must not redo it (it would query every worker again).
        args += ["--rpc", ",".join(cfg.rpc_workers), "--device", ",".join(cfg.devices) or "none"]
        if cfg.tensor_split:
            args += ["--tensor-split", ",".join(str(n) for n in cfg.tensor_split)]
        args += ["--n-gpu-layers", str(max(0, cfg.n_gpu_layers or 0)), "--fit", "off"]
    elif not cfg.gpu_backend:
        args += ["--fit", "off"]  # nothing to place; -c is pinned: skip the dry run
    elif cfg.n_gpu_layers is not None:
        args += ["--n-gpu-layers", str(max(0, cfg.n_gpu_layers))]
        if cfg.tensor_split and cfg.main_gpu is None:
            args += ["--tensor-split", ",".join(str(n) for n in cfg.tensor_split)]
        # -ngl and -c are both pinned: llama.cpp's fit would only cost a dry run.
        args += ["--fit", "off"]
    if cfg.main_gpu is not None and not cfg.rpc_workers:
        args += ["--split-mode", "none", "--main-gpu", str(cfg.main_gpu)]
    for p in cfg.projectors[:1]:  # llama-server takes one projector
        args += ["--mmproj", str(p)]
    for a in cfg.adapters:
        args += ["--lora", str(a)]
    if cfg.cache_ram_mib is not None:
        args += ["--cache-ram", str(max(0, cfg.cache_ram_mib))]
    if cfg.context_shift and not cfg.embedding and not cfg.projectors:
        args += ["--context-shift"]
    args += ["--slots" if cfg.slots else "--no-slots"]
    # No browser origin may read a runner (.invalid is reserved: no page has it, RFC 2606).
    args += ["--cors-origins", RUNNER_CORS_ORIGIN]
    args += ["--log-verbosity", str(cfg.log_verbosity), "--log-colors", "off"]
    return args


def cache_ram_mib(total_ram: int, max_runners: int) -> int:
    """A sane prompt-cache cap per runner: 8 GiB at most, 10 % of RAM shared by the runners."""
    share = total_ram // (1024 * 1024) // 10 // max(1, max_runners)
    return max(0, min(DEFAULT_CACHE_RAM_MIB, share))
