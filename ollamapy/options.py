"""Ollama's model options (API `options`, Modelfile PARAMETER): names, types, defaults, checks.

One table serves the API (unknown keys ignored with a log line, wrong types -> 400 naming the
option) and the Modelfile parser (unknown names are errors, deprecated names warn).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ollamapy.errors import BadRequest
from ollamapy.inference.jsontypes import JsonObject
from ollamapy.logs import kv

log = logging.getLogger("ollamapy.options")


@dataclass(frozen=True)
class Option:
    name: str
    type: str        # "integer" | "float32" | "boolean" | "string" | "array"
    default: Any     # None = unset (let ollamapy decide at load time)
    load: bool       # True: changes the runner (reload); False: per-request sampling


OPTIONS: dict[str, Option] = {o.name: o for o in (
    # runner (load) options
    Option("num_ctx", "integer", None, True),
    Option("num_batch", "integer", 512, True),
    Option("num_gpu", "integer", -1, True),
    Option("main_gpu", "integer", None, True),
    Option("use_mmap", "boolean", None, True),
    Option("num_thread", "integer", 0, True),
    # where the model may run: auto | local | workers, and a subset of OLLAMAPY_RPC_WORKERS to
    # pin it to (checked against the configured workers by placement.rpc.placement_request)
    Option("placement", "string", None, True),
    Option("rpc_workers", "string", None, True),
    # sampling (request) options
    Option("num_keep", "integer", 4, False),
    Option("seed", "integer", -1, False),
    Option("num_predict", "integer", -1, False),
    Option("top_k", "integer", 40, False),
    Option("top_p", "float32", 0.9, False),
    Option("min_p", "float32", 0.0, False),
    Option("typical_p", "float32", 1.0, False),
    Option("repeat_last_n", "integer", 64, False),
    Option("temperature", "float32", 0.8, False),
    Option("repeat_penalty", "float32", 1.0, False),
    Option("presence_penalty", "float32", 0.0, False),
    Option("frequency_penalty", "float32", 0.0, False),
    Option("stop", "array", None, False),
)}

# Still sent by the official Python client's Options model, or found in old Modelfiles.
LEGACY = frozenset({
    "numa", "low_vram", "f16_kv", "logits_all", "vocab_only", "use_mlock", "embedding_only",
    "tfs_z", "mirostat", "mirostat_tau", "mirostat_eta", "penalize_newline",
})
DEPRECATED_PARAMETERS = frozenset({
    "penalize_newline", "low_vram", "f16_kv", "logits_all", "vocab_only", "use_mlock",
    "mirostat", "mirostat_tau", "mirostat_eta",
})

LOAD_OPTIONS = frozenset(n for n, o in OPTIONS.items() if o.load)


def type_error(name: str, typ: str) -> BadRequest:
    if typ == "array":
        return BadRequest(f'option "{name}" must be of an array of strings')
    return BadRequest(f'option "{name}" must be of type {typ}')


def coerce(name: str, value: Any) -> Any:
    """One option value from JSON, checked against its type (JSON numbers ok for ints)."""
    opt = OPTIONS[name]
    if value is None:
        return None
    if opt.type == "integer":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise type_error(name, opt.type)
        if value != value or value in (float("inf"), float("-inf")):
            raise type_error(name, opt.type)
        return int(value)
    if opt.type == "float32":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise type_error(name, opt.type)
        if value != value or value in (float("inf"), float("-inf")):
            raise BadRequest(f'option "{name}" must be a finite number')
        return float(value)
    if opt.type == "boolean":
        if not isinstance(value, bool):
            raise type_error(name, opt.type)
        return value
    if opt.type == "array":
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise type_error(name, opt.type)
        return list(value)
    return value


def validate(options: Mapping[str, Any] | None) -> JsonObject:
    """Request options -> checked dict of known options (legacy/unknown keys dropped, logged)."""
    out: JsonObject = {}
    for key, value in (options or {}).items():
        if key in OPTIONS:
            v = coerce(key, value)
            if v is not None:
                out[key] = v
        elif key in LEGACY:
            log.debug("ignoring legacy option", extra=kv(option=key))
        else:
            log.warning("invalid option provided", extra=kv(option=key))
    return out


def merge(model_params: Mapping[str, Any], request: Mapping[str, Any]) -> JsonObject:
    """Built-in defaults <- model params <- request options (all already validated)."""
    out = {n: o.default for n, o in OPTIONS.items() if o.default is not None}
    out.update(model_params)
    out.update(request)
    return out
