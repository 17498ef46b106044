"""Ollama options -> llama-server `/completion` sampling fields.

Every sampling field is sent explicitly (llama-server's defaults differ from Ollama's: min_p 0.05,
top_p 0.95, ...), each value is clamped into the range llama-server handles safely, and
`num_predict: -1` becomes a finite budget (10 x num_ctx), as Ollama does. Nothing from the client
reaches llama-server except through here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from ollamapy.errors import BadRequest
from ollamapy.inference import pattern_guard
from ollamapy.inference.jsontypes import JsonObject

INT32_MAX = 2**31 - 1
MAX_STOP_WORDS = 64
MAX_STOP_LEN = 1024


def _clamp(v: float, lo: float, hi: float) -> float:
    return lo if v < lo else hi if v > hi else v


def _finite(name: str, v: float) -> float:
    if not math.isfinite(v):
        raise BadRequest(f'option "{name}" must be a finite number')
    return v


def num_predict_budget(num_predict: int | None, num_ctx: int) -> int:
    """-1 (infinite), absent, or more than 10 x num_ctx -> 10 x num_ctx; otherwise as asked."""
    limit = max(10 * num_ctx, 1)
    if num_predict is None or num_predict < 0 or num_predict > limit:
        return min(limit, INT32_MAX)
    return num_predict


def stop_words(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise BadRequest('option "stop" must be of an array of strings')
    if len(value) > MAX_STOP_WORDS:
        raise BadRequest(f'option "stop" has more than {MAX_STOP_WORDS} entries')
    out = [s for s in value if s]
    if any(len(s) > MAX_STOP_LEN for s in out):
        raise BadRequest(f'option "stop" entries must be at most {MAX_STOP_LEN} characters')
    return list(dict.fromkeys(out))


def seed_value(seed: int | None) -> int:
    # llama-server keeps seeds as uint32; -1 (any negative) means random.
    if seed is None or seed < 0:
        return -1
    return seed & 0xFFFFFFFF


def completion_fields(opts: Mapping[str, Any], num_ctx: int) -> JsonObject:
    """Merged, validated Ollama options (see options.merge) -> llama-server request fields."""
    def f(name: str, default: float) -> float:
        v = opts.get(name, default)
        return _finite(name, float(default if v is None else v))

    def i(name: str, default: int) -> int:
        v = opts.get(name, default)
        return int(default if v is None else v)

    repeat_last_n = i("repeat_last_n", 64)
    if repeat_last_n < -1:
        repeat_last_n = 64
    num_keep = i("num_keep", 4)
    return {
        "n_predict": num_predict_budget(opts.get("num_predict"), num_ctx),
        "temperature": _clamp(f("temperature", 0.8), 0.0, 100.0),
        "top_k": int(_clamp(i("top_k", 40), 0, INT32_MAX)),
        "top_p": _clamp(f("top_p", 0.9), 0.0, 1.0),
        "min_p": _clamp(f("min_p", 0.0), 0.0, 1.0),
        "typical_p": _clamp(f("typical_p", 1.0), 0.0, 1.0),
        "repeat_last_n": int(_clamp(repeat_last_n, -1, num_ctx)),
        "repeat_penalty": _clamp(f("repeat_penalty", 1.0), 0.0, 100.0),
        "presence_penalty": _clamp(f("presence_penalty", 0.0), -100.0, 100.0),
        "frequency_penalty": _clamp(f("frequency_penalty", 0.0), -100.0, 100.0),
        "seed": seed_value(opts.get("seed")),
        "n_keep": int(_clamp(num_keep, -1, num_ctx)),
        "stop": stop_words(opts.get("stop")),
        # samplers Ollama does not have: pinned off so llama-server's defaults cannot leak in
        "mirostat": 0,
        "top_n_sigma": -1.0,
        "xtc_probability": 0.0,
        "dry_multiplier": 0.0,
        "dynatemp_range": 0.0,
        "min_keep": 0,
        "n_probs": 0,
        "ignore_eos": False,
    }


def format_fields(fmt: Any) -> JsonObject:
    """Ollama `format` -> llama-server constraint: "json" -> any JSON object; a schema object ->
    json_schema; ""/null -> none; anything else is Ollama's error."""
    if fmt is None or fmt == "" or fmt == b"":
        return {}
    if fmt == "json":
        return {"json_schema": {"type": "object"}}
    if isinstance(fmt, dict):
        try:
            json.dumps(fmt)
        except (TypeError, ValueError):
            raise BadRequest("invalid format") from None
        pattern_guard.check_schema(fmt)
        return {"json_schema": fmt}
    shown = fmt if isinstance(fmt, str) else json.dumps(fmt)
    raise BadRequest(f'invalid format: "{shown}"; expected "json" or a valid JSON Schema object')
