"""Every OLLAMA_* setting ollamapy honours: type, default, one-line description, validation.

`load_settings()` reads the environment once at start; a bad value raises ConfigError with one
clear line. Parsing follows Ollama's rules (values trimmed of spaces and quotes).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ollamapy.errors import ConfigError
from ollamapy.gofmt import parse_duration
from ollamapy.inference.jsontypes import JsonObject
from ollamapy.placement.rpc import WorkerSpec, parse_workers

DEFAULT_PORT = 11434


def is_loopback_host(host: str) -> bool:
    """`localhost` or a loopback IP literal (a name is never resolved here)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
        return is_loopback_host(self.host)


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
        return parse_duration(v)
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


def parse_metrics_auth(value: str) -> str:
    v = _clean(value).lower() or "inference"
    if v not in ("inference", "none"):
        raise ValueError(f"{v!r} is not one of inference, none")
    return v


LOG_LEVELS = ("trace", "debug", "info", "warning", "error", "off")


def parse_log_level(value: str) -> str:
    v = _clean(value).lower()
    if v not in LOG_LEVELS:
        raise ValueError(f"{v!r} is not one of {', '.join(LOG_LEVELS)}")
    return v


def _models_dir(value: str) -> Path:
    v = _clean(value)
    return Path(os.path.expanduser(v)) if v else Path(os.path.expanduser("~/.ollama/models"))


def _rpc_workers(value: str) -> tuple[WorkerSpec, ...]:
    return parse_workers(_clean(value))


@dataclass(frozen=True)
class Setting:
    env: str
    attr: str  # the typed attribute of Settings that holds the parsed value
    parse: Callable[[str], Any]
    default: str
    description: str
    secret: bool = False


SETTINGS: tuple[Setting, ...] = (
    Setting("OLLAMA_HOST", "host", parse_host, "127.0.0.1:11434",
            "server bind address / client target"),
    Setting("OLLAMA_MODELS", "models_dir", _models_dir, "",
            "model store directory (default ~/.ollama/models)"),
    Setting("OLLAMA_KEEP_ALIVE", "keep_alive", parse_seconds, "5m",
            "how long a model stays loaded when idle"),
    Setting("OLLAMA_LOAD_TIMEOUT", "load_timeout", parse_seconds, "5m",
            "load stall timeout (no progress)"),
    Setting("OLLAMA_MAX_LOADED_MODELS", "max_loaded_models", parse_uint, "0",
            "loaded models at once (0 = 3 per GPU)"),
    Setting("OLLAMA_NUM_PARALLEL", "num_parallel", parse_uint, "1",
            "parallel request slots per loaded model"),
    Setting("OLLAMA_MAX_QUEUE", "max_queue", parse_uint, "512",
            "pending requests before 503 server busy"),
    Setting("OLLAMA_CONTEXT_LENGTH", "context_length", parse_uint, "0",
            "default num_ctx (0 = by GPU memory tier)"),
    Setting("OLLAMA_DEBUG", "debug", parse_debug_level, "0",
            "log level: 0 info, 1 debug, 2 trace"),
    Setting("OLLAMA_FLASH_ATTENTION", "flash_attention", parse_flash_attention, "auto",
            "flash attention on/off/auto"),
    Setting("OLLAMA_KV_CACHE_TYPE", "kv_cache_type", parse_kv_cache_type, "f16",
            "KV cache type: f16, q8_0, q4_0"),
    Setting("OLLAMA_GPU_OVERHEAD", "gpu_overhead", parse_uint, "0",
            "bytes of VRAM to keep free per GPU"),
    Setting("OLLAMA_SCHED_SPREAD", "sched_spread", parse_bool, "false",
            "spread every model over all GPUs"),
    Setting("OLLAMA_NOPRUNE", "noprune", parse_bool, "false", "do not prune unused blobs"),
    Setting("OLLAMA_NOHISTORY", "nohistory", parse_bool, "false", "CLI: no REPL history file"),
    Setting("OLLAMA_ORIGINS", "origins", parse_list, "",
            "extra allowed CORS origins, comma separated"),
    Setting("OLLAMA_LLM_LIBRARY", "llm_library", _clean, "",
            "force a runner variant (cpu, cuda, rocm, ...)"),
    Setting("OLLAMA_API_KEYS", "api_keys", parse_list, "",
            "accepted Bearer API keys (ollamapy)", secret=True),
    Setting("OLLAMAPY_INFERENCE_KEYS", "inference_keys", parse_list, "",
            "accepted API keys that may only run models (no create/copy/delete/pull/push)",
            secret=True),
    Setting("OLLAMA_API_KEYS_FILE", "api_keys_file", _clean, "",
            "file of accepted API keys: `key [scope]` lines"),
    Setting("OLLAMA_API_KEY", "api_key", _clean, "", "client: Bearer key sent to the server",
            secret=True),
    Setting("OLLAMAPY_RPC_WORKERS", "rpc_workers", _rpc_workers, "",
            "llama.cpp RPC workers host:port[@MiB],... (`ollamapy worker`)"),
    Setting("OLLAMAPY_RUNNERS", "runners_dir", _clean, "",
            "directory of built runners (before repo runners/)"),
    Setting("OLLAMAPY_MAX_BODY_BYTES", "max_body_bytes", parse_uint, str(1024**3),
            "largest request body accepted (413 above it)"),
    # harden (issue 11): bounds on request- and model-controlled work
    Setting("OLLAMAPY_MAX_JSON_BYTES", "max_json_bytes", parse_uint, str(32 * 1024**2),
            "largest JSON request body (413 above it; blob uploads are not limited)"),
    Setting("OLLAMAPY_MAX_JSON_OBJECTS", "max_json_objects", parse_uint, "100000",
            "JSON objects in one request body (400 above it)"),
    Setting("OLLAMAPY_MAX_MESSAGES", "max_messages", parse_uint, "20000",
            "messages in one chat request"),
    Setting("OLLAMAPY_MAX_IMAGES", "max_images", parse_uint, "256", "images in one request"),
    Setting("OLLAMAPY_MAX_EMBED_INPUTS", "max_embed_inputs", parse_uint, "16384",
            "inputs in one embed request"),
    Setting("OLLAMAPY_TEMPLATE_MAX_OUTPUT", "template_max_output", parse_uint, str(16 * 1024**2),
            "characters one template render may produce"),
    Setting("OLLAMAPY_TEMPLATE_MAX_STEPS", "template_max_steps", parse_uint, "2000000",
            "template actions and range iterations executed per render"),
    Setting("OLLAMAPY_TEMPLATE_MAX_WIDTH", "template_max_width", parse_uint, "100000",
            "largest printf width or precision in a template"),
    Setting("OLLAMAPY_TEMPLATE_MAX_DEPTH", "template_max_depth", parse_uint, "100",
            "nesting depth of template blocks and parentheses"),
    Setting("OLLAMAPY_TEMPLATE_MAX_NODES", "template_max_nodes", parse_uint, "4096",
            "actions and text pieces in one template"),
    Setting("OLLAMAPY_MAX_MANIFEST_LAYERS", "max_manifest_layers", parse_uint, "1024",
            "layers in one manifest"),
    Setting("OLLAMAPY_MAX_TEXT_LAYER_BYTES", "max_text_layer_bytes", parse_uint, str(16 * 1024**2),
            "text layers (license, template, system, params, messages) of one model, in total"),
    Setting("OLLAMAPY_SHOW_MAX_ARRAY", "show_max_array", parse_uint, "300000",
            "GGUF array elements show --verbose returns per array (the rest is cut)"),
    Setting("OLLAMAPY_WRITE_TIMEOUT", "write_timeout", parse_seconds, "2m",
            "drop a client that reads nothing of a response this long (0 = never)"),
    Setting("OLLAMAPY_BODY_TIMEOUT", "body_timeout", parse_seconds, "2m",
            "drop a client that sends nothing more of a request body this long (0 = never)"),
    Setting("OLLAMAPY_HEADER_TIMEOUT", "header_timeout", parse_seconds, "1m",
            "close a connection that sends no complete request head this long (also the "
            "keep-alive idle time; 0 = aiohttp's default)"),
    Setting("OLLAMAPY_TLS_CERT", "tls_cert", _clean, "",
            "PEM certificate chain: serve HTTPS (with the key)"),
    Setting("OLLAMAPY_TLS_KEY", "tls_key", _clean, "", "PEM private key of OLLAMAPY_TLS_CERT"),
    Setting("OLLAMAPY_METRICS_AUTH", "metrics_auth", parse_metrics_auth, "inference",
            "GET /metrics: 'inference' needs an API key when keys are set, 'none' is open"),
    Setting("OLLAMAPY_ACCESS_LOG", "access_log", parse_log_level, "info",
            "level of the one-line-per-request access log (debug, info, ..., off)"),
)
_BY_ENV = {s.env: s for s in SETTINGS}


@dataclass(frozen=True)
class Settings:
    """Parsed settings, read through typed attributes (`settings.keep_alive`)."""

    host: HostPort
    models_dir: Path
    keep_alive: float  # seconds; negative = forever
    load_timeout: float  # seconds
    max_loaded_models: int  # 0 = 3 per GPU
    num_parallel: int
    max_queue: int
    context_length: int  # 0 = by GPU memory
    debug: int
    flash_attention: str  # auto | on | off
    kv_cache_type: str
    gpu_overhead: int  # bytes
    sched_spread: bool
    noprune: bool
    nohistory: bool
    origins: tuple[str, ...]
    llm_library: str
    api_keys: tuple[str, ...]
    inference_keys: tuple[str, ...]
    api_keys_file: str
    api_key: str
    rpc_workers: tuple[WorkerSpec, ...]
    runners_dir: str
    max_body_bytes: int
    max_json_bytes: int
    max_json_objects: int
    max_messages: int
    max_images: int
    max_embed_inputs: int
    template_max_output: int
    template_max_steps: int
    template_max_width: int
    template_max_depth: int
    template_max_nodes: int
    max_manifest_layers: int
    max_text_layer_bytes: int
    show_max_array: int
    write_timeout: float  # seconds; 0 = never
    body_timeout: float  # seconds; 0 = never
    header_timeout: float  # seconds; 0 = aiohttp's default
    tls_cert: str  # path; with tls_key: serve HTTPS
    tls_key: str
    metrics_auth: str  # inference | none
    access_log: str  # one of LOG_LEVELS

    def __getitem__(self, env: str) -> Any:
        """Transitional `settings["OLLAMA_X"]` for modules not yet on the typed attributes."""
        return getattr(self, _BY_ENV[env].attr)

    def redacted(self) -> dict[str, str]:
        """For the start-up log line: secrets shown only as set/unset."""
        out = {}
        for s in SETTINGS:
            v = getattr(self, s.attr)
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
    values: JsonObject = {}
    for s in SETTINGS:
        raw = env.get(s.env)
        text = s.default if raw is None or _clean(raw) == "" else raw
        try:
            values[s.attr] = s.parse(text)
        except (ValueError, TypeError) as e:
            shown = "<redacted>" if s.secret else _clean(raw or "")
            raise ConfigError(f"invalid {s.env}={shown!r}: {e}") from None
    return Settings(**values)


def describe(env: str) -> Setting:
    return _BY_ENV[env]


def read_setting(env: str, environ: Mapping[str, str] | None = None) -> Any:
    """One setting, parsed, for modules that bound work without a Settings object at hand
    (a bad value falls back to the default rather than failing a request)."""
    s = _BY_ENV[env]
    raw = (os.environ if environ is None else environ).get(env)
    try:
        return s.parse(s.default if raw is None or _clean(raw) == "" else raw)
    except (ValueError, TypeError):
        return s.parse(s.default)
