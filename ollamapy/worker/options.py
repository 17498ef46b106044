"""`ollamapy worker` decisions, pure: the rpc-server argv and environment, the bind policy, the
restart backoff. The supervisor (supervisor.py) is the thin async shell around them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ollamapy.config import is_loopback_host
from ollamapy.errors import BadRequest
from ollamapy.paths import cache_dir
from ollamapy.placement.gpu import MiB
from ollamapy.placement.rpc import DEFAULT_PORT

DEFAULT_HOST = "127.0.0.1"
# What the rpc-server process itself needs in private memory besides buffers (backends, thread
# stacks, its per-client graph and the receive buffer of one tensor upload): added to --mem for
# the RLIMIT_DATA cap. Measured (cpu runner, SmolLM2 on one worker): VmData 110 MiB for 105 MiB of
# buffers, 15 MiB left after the client went, ~1 MiB before any client.
BASE_DATA_BYTES = 16 * MiB
HEADROOM_MIN = 32 * MiB  # see data_limit

UNAUTHENTICATED_WARNING = (
    "llama.cpp's RPC protocol is unauthenticated and unencrypted: anyone who can reach "
    "{host}:{port} can read and write this machine's memory buffers and run compute on it. "
    "Only expose it on a private network (WireGuard, a VLAN) to the ollamapy server."
)


@dataclass(frozen=True)
class WorkerOptions:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    devices: tuple[str, ...] = ()  # llama.cpp device names (CUDA0, CPU, ...); () = its default
    mem: int = 0  # MiB cap on what clients may allocate (0 = no cap)
    cache: Path | None = None  # tensor cache root (LLAMA_CACHE); rpc-server adds /rpc
    use_cache: bool = True
    threads: int = 0  # CPU device threads (0 = rpc-server's default)
    allow_remote: bool = False
    extra_env: Mapping[str, str] = field(default_factory=dict)

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"


def check_bind(opts: WorkerOptions) -> str | None:
    """None for loopback; the warning to print for anything else. Without --allow-remote a
    non-loopback bind is refused: the protocol has no authentication at all."""
    if is_loopback_host(opts.host):
        return None
    if not opts.allow_remote:
        raise BadRequest(
            f"refusing to bind the RPC worker to {opts.host}: pass --allow-remote to listen on a "
            "non-loopback address. " + UNAUTHENTICATED_WARNING.format(host=opts.host,
                                                                     port=opts.port))
    return UNAUTHENTICATED_WARNING.format(host=opts.host, port=opts.port)


def validate(opts: WorkerOptions) -> None:
    if not 0 < opts.port < 65536:
        raise BadRequest(f"invalid port {opts.port}")
    if opts.mem < 0:
        raise BadRequest("--mem must be >= 0 MiB")
    for d in opts.devices:
        if not d or not all(c.isalnum() or c in "_-" for c in d):
            raise BadRequest(f"invalid device name {d!r}")
    if any(c in opts.host for c in " ,/\t") or not opts.host:
        raise BadRequest(f"invalid host {opts.host!r}")


def rpc_server_argv(binary: Path, opts: WorkerOptions) -> list[str]:
    """The rpc-server command line (its flags: -H host, -p port, -d dev1,dev2, -t N, -c)."""
    argv = [str(binary), "--host", opts.host, "--port", str(opts.port)]
    if opts.devices:
        argv += ["--device", ",".join(opts.devices)]
    if opts.threads > 0:
        argv += ["--threads", str(opts.threads)]
    if opts.use_cache:
        argv.append("--cache")
    return argv


def rpc_server_env(environ: Mapping[str, str], opts: WorkerOptions,
                   default_cache: Path) -> dict[str, str]:
    """rpc-server reads its cache dir from LLAMA_CACHE (then XDG_CACHE_HOME/llama.cpp) and
    appends /rpc; we pin it so a service user's cache is where the unit says."""
    env = {k: v for k, v in environ.items() if not k.startswith(("LLAMA_ARG_", "GGML_RPC_DEBUG"))}
    env["LLAMA_CACHE"] = str(opts.cache or default_cache)
    env.update(opts.extra_env)
    return env


def data_limit(opts: WorkerOptions) -> int | None:
    """RLIMIT_DATA for the child (bytes), enforcing --mem on host-memory (CPU) buffers: an
    allocation beyond it fails and the client's load fails with an allocation error. GPU memory
    is not covered by it (the cap is then only what the server is told: host:port@MiB).

    Headroom on top of --mem: rpc-server holds one whole tensor in a temporary vector while it
    receives it (SET_TENSOR) or re-reads it from the tensor cache (SET_TENSOR_HASH), so the peak is
    the buffers plus the largest tensor (the output matrix, vocab x embedding). Measured with
    SmolLM2: without it, a cache hit on the 28.7 MiB output tensor threw std::bad_alloc and
    aborted the worker."""
    if not opts.mem:
        return None
    return opts.mem * MiB + BASE_DATA_BYTES + max(HEADROOM_MIN, opts.mem * MiB // 8)


def backoff(failures: int, *, base: float = 1.0, cap: float = 30.0) -> float:
    """Seconds before restart N (1, 2, 4, ... capped): a crash loop must not spin."""
    if failures <= 0:
        return 0.0
    return min(cap, base * 2.0 ** (failures - 1))


def default_cache_dir() -> Path:
    """The tensor cache lives with ollamapy's other caches (rpc-server adds /rpc)."""
    return cache_dir() / "worker"


def log_level_for(line: str) -> str:
    """Per-connection chatter of rpc-server (every health probe is one connection) is debug."""
    if line.startswith(("Accepted client connection", "Client connection closed")):
        return "debug"
    low = line.lower()
    if "error" in low or "failed" in low or "warning" in low or line.startswith("!!!"):
        return "warning"
    return "info"
