"""Every OLLAMA_* setting ollamapy honours: type, default, one-line description, validation.

`load_settings()` reads the environment once at start; a bad value raises ConfigError with one
clear line. Parsing follows Ollama's rules (values trimmed of spaces and quotes).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ollamapy.durations import parse_go_duration
from ollamapy.errors import ConfigError
from ollamapy.placement.rpc import WorkerSpec, parse_workers

DEFAULT_PORT = 11434


@dataclass(frozen=True)
class HostPort:
    """Where the server listens, or where a client connects."""

    scheme: str
    host: str  # no brackets; "" means all interfaces
    port: int
    path: str = ""

    @property
    def url(self) -> str:
        host = self.host or "0.0.0.0"
        if ":" in host:
            host = f"[{host}]"
        return f"{self.scheme}://{host}:{self.port}{self.path}"

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def _clean(value: str) -> str:
    return value.strip().strip("\"'").strip()


def parse_host(value: str | None) -> HostPort:
    """OLLAMA_HOST as Ollama's envconfig.Host parses it.

    `[scheme://]host[:port][/path]`: no scheme -> http; default port 11434, except an explicit
    http:// -> 80 and https:// -> 443; `:PORT` means all interfaces; IPv6 in brackets; an
    unparsable port falls back to the default.
    """
    raw = _clean(value or "")
    default_port = DEFAULT_PORT
    scheme = "http"
    if "://" in raw:
        scheme, raw = raw.split("://", 1)
        scheme = scheme.lower()
        if scheme == "http":
            default_port = 80
        elif scheme == "https":
            default_port = 443
    elif raw.lower().startswith("ollama.com"):
        scheme, default_port = "https", 443
    hostport, sep, path = raw.partition("/")
    path = sep + path if sep and path else ""
    if not hostport:
        return HostPort(scheme, "127.0.0.1", default_port, path)
    parts = urlsplit(f"//{hostport}")
    try:
        host = parts.hostname
        port = parts.port
    except ValueError:  # bad port
        host = parts.netloc.rsplit(":", 1)[0].strip("[]") if ":" in parts.netloc else parts.netloc
        port = None
    if host is None:
        host = ""
    if hostport.startswith(":"):
        host = ""
    elif not host:
        host = "127.0.0.1"
    return HostPort(scheme, host, port if port is not None else default_port, path)


def client_host(value: str | None) -> HostPort:
    """The address a client connects to: unspecified binds (0.0.0.0, ::, "") become loopback."""
    hp = parse_host(value)
    host = hp.host
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return HostPort(hp.scheme, host, hp.port, hp.path)


def parse_bool(value: str) -> bool:
    """Go's strconv.ParseBool, where Ollama treats an unparsable non-empty value as true."""
    v = _clean(value).lower()
    if v in ("", "0", "f", "false"):
        return False
    return True


def parse_seconds(value: str) -> float:
    """A duration given as Go duration text or as plain (possibly negative) seconds."""
    v = _clean(value)
    try:
        return float(int(v))
    except ValueError:
        pass
    try:
        return parse_go_duration(v)
    except ValueError as e:
        raise ValueError(f"{v!r} is not a duration (e.g. 5m, 1h, 300): {e}") from None


def parse_uint(value: str) -> int:
    v = _clean(value)
    n = int(v)
    if n < 0:
        raise ValueError(f"{v!r} must be >= 0")
    return n


def parse_debug_level(value: str) -> int:
    """OLLAMA_DEBUG: 0/false INFO, 1/true DEBUG, 2 TRACE."""
    v = _clean(value).lower()
    if v in ("", "0", "false", "f"):
        return 0
    if v.isdigit():
        return int(v)
    return 1


def parse_list(value: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in _clean(value).split(",") if x.strip())


def parse_kv_cache_type(value: str) -> str:
    v = _clean(value).lower()
    allowed = ("f16", "q8_0", "q4_0", "f32", "bf16", "q4_1", "iq4_nl", "q5_0", "q5_1")
    if v and v not in allowed:
        raise ValueError(f"{v!r} is not one of {', '.join(allowed)}")
    return v or "f16"


def parse_flash_attention(value: str) -> str:
    v = _clean(value).lower()
    if v in ("", "auto"):
        return "auto"
    return "on" if parse_bool(v) else "off"


def _models_dir(value: str) -> Path:
    v = _clean(value)
    return Path(os.path.expanduser(v)) if v else Path(os.path.expanduser("~/.ollama/models"))


def _rpc_workers(value: str) -> tuple[WorkerSpec, ...]:
    return parse_workers(_clean(value))


@dataclass(frozen=True)
class Setting:
    env: str
    parse: Callable[[str], Any]
    default: str
    description: str
    secret: bool = False


SETTINGS: tuple[Setting, ...] = (
    Setting("OLLAMA_HOST", parse_host, "127.0.0.1:11434", "server bind address / client target"),
    Setting("OLLAMA_MODELS", _models_dir, "", "model store directory (default ~/.ollama/models)"),
    Setting("OLLAMA_KEEP_ALIVE", parse_seconds, "5m", "how long a model stays loaded when idle"),
    Setting("OLLAMA_LOAD_TIMEOUT", parse_seconds, "5m", "load stall timeout (no progress)"),
    Setting("OLLAMA_MAX_LOADED_MODELS", parse_uint, "0", "loaded models at once (0 = 3 per GPU)"),
    Setting("OLLAMA_NUM_PARALLEL", parse_uint, "1", "parallel request slots per loaded model"),
    Setting("OLLAMA_MAX_QUEUE", parse_uint, "512", "pending requests before 503 server busy"),
    Setting("OLLAMA_CONTEXT_LENGTH", parse_uint, "0", "default num_ctx (0 = by GPU memory tier)"),
    Setting("OLLAMA_DEBUG", parse_debug_level, "0", "log level: 0 info, 1 debug, 2 trace"),
    Setting("OLLAMA_FLASH_ATTENTION", parse_flash_attention, "auto", "flash attention on/off/auto"),
    Setting("OLLAMA_KV_CACHE_TYPE", parse_kv_cache_type, "f16", "KV cache type: f16, q8_0, q4_0"),
    Setting("OLLAMA_GPU_OVERHEAD", parse_uint, "0", "bytes of VRAM to keep free per GPU"),
    Setting("OLLAMA_SCHED_SPREAD", parse_bool, "false", "spread every model over all GPUs"),
    Setting("OLLAMA_NOPRUNE", parse_bool, "false", "do not prune unused blobs"),
    Setting("OLLAMA_NOHISTORY", parse_bool, "false", "CLI: no REPL history file"),
    Setting("OLLAMA_ORIGINS", parse_list, "", "extra allowed CORS origins, comma separated"),
    Setting("OLLAMA_LLM_LIBRARY", _clean, "", "force a runner variant (cpu, cuda, rocm, ...)"),
    Setting("OLLAMA_API_KEYS", parse_list, "", "accepted Bearer API keys (ollamapy)", secret=True),
    Setting("OLLAMA_API_KEYS_FILE", _clean, "", "file of accepted API keys, one per line"),
    Setting("OLLAMA_API_KEY", _clean, "", "client: Bearer key sent to the server", secret=True),
    Setting("OLLAMAPY_RPC_WORKERS", _rpc_workers, "",
            "llama.cpp RPC workers host:port[@MiB],... (`ollamapy worker`)"),
    Setting("OLLAMAPY_RUNNERS", _clean, "", "directory of built runners (before repo runners/)"),
    Setting("OLLAMAPY_MAX_BODY_BYTES", parse_uint, str(1024**3),
            "largest request body accepted (413 above it)"),
)
_BY_ENV = {s.env: s for s in SETTINGS}


@dataclass(frozen=True)
class Settings:
    values: Mapping[str, Any] = field(default_factory=dict)

    def __getitem__(self, env: str) -> Any:
        return self.values[env]

    @property
    def host(self) -> HostPort:
        return self.values["OLLAMA_HOST"]

    @property
    def models_dir(self) -> Path:
        return self.values["OLLAMA_MODELS"]

    def redacted(self) -> dict[str, str]:
        """For the start-up log line: secrets shown only as set/unset."""
        out = {}
        for s in SETTINGS:
            v = self.values[s.env]
            if s.secret:
                out[s.env] = "<redacted>" if v else ""
            elif isinstance(v, HostPort):
                out[s.env] = v.url
            elif isinstance(v, tuple):
                out[s.env] = ",".join(str(getattr(x, "endpoint", x)) for x in v)
            else:
                out[s.env] = str(v)
        return out


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for s in SETTINGS:
        raw = env.get(s.env)
        text = s.default if raw is None or _clean(raw) == "" else raw
        try:
            values[s.env] = s.parse(text)
        except (ValueError, TypeError) as e:
            shown = "<redacted>" if s.secret else _clean(raw or "")
            raise ConfigError(f"invalid {s.env}={shown!r}: {e}") from None
    return Settings(values)


def describe(env: str) -> Setting:
    return _BY_ENV[env]
