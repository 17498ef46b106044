"""The JSON writer of every response body and streamed chunk (`dumps`): orjson, with the
stdlib's encoder behind it for what orjson refuses; and `strict_dumps` for llama-server.

orjson runs once per streamed chunk at 2-3x the stdlib's speed (bench/RESULTS.md, fifth round:
relay capacity +40 %). What it refuses, an integer past 64 bits (a model's tool-call
arguments can hold one) or a key that is not a string, is written by the stdlib encoder with
the same compact, UTF-8 settings. A NaN or infinity becomes `null`, as JavaScript's
JSON.stringify writes it: valid JSON for every client, where the stdlib wrote `NaN`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import orjson

_c_make_encoder = getattr(json.encoder, "c_make_encoder", None)


def _make_encode(*, ascii_only: bool, allow_nan: bool) -> Callable[[Any], str]:
    """A compact JSONEncoder's `encode`, minus the C encoder JSONEncoder.iterencode builds on
    every call: built once here. No
    circular-reference markers: what is encoded here is built fresh per response or request
    from parsed JSON (a cycle still ends in RecursionError, not a hang)."""
    encoder = json.JSONEncoder(ensure_ascii=ascii_only, separators=(",", ":"),
                               allow_nan=allow_nan)
    if _c_make_encoder is None:  # not CPython's C accelerator
        return encoder.encode
    strings = (json.encoder.encode_basestring_ascii if ascii_only
               else json.encoder.encode_basestring)
    c_encode = _c_make_encoder(None, encoder.default, strings, None, ":", ",", False, False,
                               allow_nan)
    join = "".join
    encode_str = encoder.encode

    def encode(obj: Any) -> str:
        if isinstance(obj, str):
            return encode_str(obj)
        return join(c_encode(obj, 0))

    return encode


_stdlib_encode = _make_encode(ascii_only=False, allow_nan=True)
strict_dumps = _make_encode(ascii_only=True, allow_nan=False)
"""What ollamapy sends llama-server: JSON that refuses NaN and infinities (ValueError;
llama-server answers such a number with a 500), ASCII so that a lone surrogate a client's
JSON escaped stays escaped."""
_orjson_dumps = orjson.dumps


_SURROGATE = re.compile("[\ud800-\udfff]")


def replace_surrogates(text: str) -> str:
    """`text` with each surrogate code point (a lone UTF-16 half: valid pairs are already one
    code point in a str) replaced by U+FFFD, as Go's encoding/json does."""
    return _SURROGATE.sub("\ufffd", text)


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON; TypeError for what nothing can encode. A lone surrogate in a
    string (which UTF-8 cannot carry) is written as U+FFFD."""
    try:
        return _orjson_dumps(obj)
    except TypeError:  # orjson.JSONEncodeError is one
        text = _stdlib_encode(obj)
    try:
        return text.encode()
    except UnicodeEncodeError:
        return replace_surrogates(text).encode()
