"""Request bodies -> pydantic models, with the error texts Ollama's Go JSON decoder produces.

Every route family decodes through `decode` so a malformed body reads the same everywhere:
empty -> "missing request body", syntax -> Go's "invalid character ..." wording, wrong type ->
"json: cannot unmarshal <kind> into Go struct field <Type>.<field> of type <go type>".

Bounds (issue 11): `decode_request` reads at most `Caps.max_json_bytes` (413 above), decodes bodies
above `OFFLOAD_BYTES` in a worker thread, and refuses bodies with too many JSON values, objects,
messages, images or embed inputs (400) before pydantic builds a model from them.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError

from ollamapy import jsoncodec
from ollamapy.errors import BadRequest, LimitExceeded, PayloadTooLarge
from ollamapy.inference.jsontypes import JsonObject

if TYPE_CHECKING:
    from aiohttp import web

M = TypeVar("M", bound=BaseModel)

# pydantic error-type prefix -> the Go type Ollama's structs declare for such a field.
_GO_TYPES = (("string", "string"), ("int", "int"), ("float", "float64"), ("bool", "bool"),
             ("list", "[]interface {}"), ("tuple", "[]interface {}"),
             ("dict", "map[string]interface {}"), ("model", "struct"))


def json_kind(v: Any) -> str:
    """The JSON kind of a value as Go names it in unmarshal errors."""
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return "null"


def go_json_error(e: json.JSONDecodeError) -> str:
    """Go's encoding/json wording for a syntax error (what Ollama clients see)."""
    if e.pos >= len(e.doc.rstrip()):
        return "unexpected EOF"
    ch = e.doc[e.pos]
    if e.msg.startswith("Expecting value"):
        return f"invalid character '{ch}' looking for beginning of value"
    if e.msg.startswith("Expecting property name"):
        return f"invalid character '{ch}' looking for beginning of object key string"
    if e.msg.startswith("Expecting ','"):
        return f"invalid character '{ch}' after object key:value pair"
    return f"invalid character '{ch}' in JSON input"


def _describe(cls: type[BaseModel], e: ValidationError) -> str:
    err = e.errors()[0]
    if err["type"] == "value_error":  # a validator's own message, already in Ollama's words
        return str(err["ctx"]["error"])
    loc = ".".join(str(p) for p in err["loc"] if not isinstance(p, int))
    if err["type"] == "missing":
        return f"missing required field {loc!r}"
    if err["type"] == "json_invalid":  # what Python's parser takes and pydantic's does not
        return f"invalid JSON: {err.get('ctx', {}).get('error', err['msg'])}"
    go_type = next((g for prefix, g in _GO_TYPES if err["type"].startswith(prefix)), "value")
    return (f"json: cannot unmarshal {json_kind(err.get('input'))} into Go struct field "
            f"{cls.__name__}.{loc} of type {go_type}")


def _reject_constant(name: str) -> Any:
    """NaN/Infinity are not JSON (Go refuses them; llama-server answers them with a 500)."""
    raise ValueError(f"invalid character '{name[0]}' looking for beginning of value")


_CAP_SETTINGS = ("OLLAMAPY_MAX_BODY_BYTES", "OLLAMAPY_MAX_JSON_BYTES", "OLLAMAPY_MAX_JSON_OBJECTS",
                 "OLLAMAPY_MAX_MESSAGES", "OLLAMAPY_MAX_IMAGES", "OLLAMAPY_MAX_EMBED_INPUTS")


@dataclass(frozen=True)
class Caps:
    """Per-request bounds on JSON bodies; defaults sit far above what real clients send."""

    max_json_bytes: int = 32 * 1024 * 1024
    max_json_objects: int = 100_000
    max_messages: int = 20_000
    max_images: int = 256
    max_embed_inputs: int = 16_384
    max_json_values: int = 2_000_000  # array elements + object members (memory per value)

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> Caps:
        """From parsed settings; OLLAMAPY_MAX_BODY_BYTES (the server-wide ceiling) still wins
        when it is the smaller."""
        from ollamapy.config import read_setting

        def get(name: str) -> int:  # a hand-built Settings may lack them: defaults then
            v = values.get(name)
            return int(v) if v is not None else int(read_setting(name, {}))

        body = get("OLLAMAPY_MAX_BODY_BYTES")
        json_bytes = get("OLLAMAPY_MAX_JSON_BYTES")
        return cls(max_json_bytes=min(body, json_bytes) if body else json_bytes,
                   max_json_objects=get("OLLAMAPY_MAX_JSON_OBJECTS"),
                   max_messages=get("OLLAMAPY_MAX_MESSAGES"),
                   max_images=get("OLLAMAPY_MAX_IMAGES"),
                   max_embed_inputs=get("OLLAMAPY_MAX_EMBED_INPUTS"))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Caps:
        from ollamapy.config import read_setting

        return cls.from_values({n: read_setting(n, environ) for n in _CAP_SETTINGS})


_caps: Caps | None = None
_override: Caps | None = None
_by_settings: dict[int, tuple[object, Caps]] = {}
OFFLOAD_BYTES = 64 * 1024     # bodies above this are decoded in a worker thread
_PRESCAN_BYTES = 1024 * 1024  # bodies above this get their values counted before parsing
# a string, or an unterminated one running to the end: every match succeeds, so the scan is linear
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*(?:"|\\?\Z)', re.DOTALL)


def caps() -> Caps:
    global _caps
    if _caps is None:
        _caps = Caps.from_env(os.environ)
    return _caps


def set_caps(value: Caps | None) -> None:
    """Override the caps everywhere, the app's settings included (None: back to settings and
    the environment)."""
    global _caps, _override
    _caps = _override = value


def _request_caps(request: web.Request) -> Caps:
    """The caps of the app's own Settings (what `ollamapy serve` loaded), else the env."""
    if _override is not None:
        return _override
    from ollamapy.server.keys import SERVICES_KEY

    services = request.app.get(SERVICES_KEY)
    settings = services.settings if services is not None else None
    if settings is None:
        return caps()
    hit = _by_settings.get(id(settings))
    if hit is None or hit[0] is not settings:
        hit = (settings, Caps.from_values({env: settings[env] for env in _CAP_SETTINGS}))
        _by_settings.clear()
        _by_settings[id(settings)] = hit
    return hit[1]


async def read_limited(request: web.Request, limit: int) -> bytes:
    """The body, read in chunks and refused with 413 as soon as it passes `limit` (so a huge
    body is never buffered whole)."""
    too_large = PayloadTooLarge(f"request body too large: more than {limit} bytes "
                                "(OLLAMAPY_MAX_JSON_BYTES)")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.content.iter_chunked(256 * 1024):
        total += len(chunk)
        if total > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


async def decode_request(cls: type[M], request: web.Request, limits: Caps | None = None) -> M:
    """Read and decode a JSON request body within the caps, off the loop when it is large."""
    lim = limits or _request_caps(request)
    body = await read_limited(request, lim.max_json_bytes)
    if len(body) > OFFLOAD_BYTES:
        return await asyncio.to_thread(decode, cls, body, lim)
    return decode(cls, body, lim)


def _count_values(body: bytes) -> int:
    """Upper bound on array elements + object members: commas outside strings, plus one.
    One pass, holding one string at a time (a `sub` copy held a list of every piece)."""
    inside = 0
    for i, m in enumerate(_JSON_STRING.finditer(body)):
        inside += m.group().count(b",")
        if i & 0xFFF == 0:
            time.sleep(0)  # in a worker thread: let the event loop have the GIL
    return body.count(b",") - inside + 1


def check_counts(data: JsonObject, lim: Caps) -> None:
    """Messages, images and embed inputs within their caps (clear 400s otherwise)."""
    msgs = data.get("messages")
    n_msgs = len(msgs) if isinstance(msgs, list) else 0
    if n_msgs > lim.max_messages:
        raise LimitExceeded(f"too many messages: {n_msgs} (limit {lim.max_messages}, "
                            "OLLAMAPY_MAX_MESSAGES)")
    images = _count_images(data.get("images"))
    inputs = data.get("input")  # Responses: input items carry content parts too
    for m in itertools.chain(msgs if isinstance(msgs, list) else (),
                             inputs if isinstance(inputs, list) else ()):
        if isinstance(m, dict):
            images += _count_images(m.get("images")) + _count_image_parts(m.get("content"))
    if images > lim.max_images:
        raise LimitExceeded(f"too many images: {images} (limit {lim.max_images}, "
                            "OLLAMAPY_MAX_IMAGES)")
    n_inputs = len(inputs) if isinstance(inputs, list) else 0
    if n_inputs > lim.max_embed_inputs:
        raise LimitExceeded(f"too many inputs: {n_inputs} (limit {lim.max_embed_inputs}, "
                            "OLLAMAPY_MAX_EMBED_INPUTS)")


def _count_images(v: Any) -> int:
    return len(v) if isinstance(v, list) else 0


def _count_image_parts(content: Any) -> int:
    """OpenAI / Anthropic content parts that carry an image."""
    if not isinstance(content, list):
        return 0
    return sum(1 for p in content if isinstance(p, dict)
               and p.get("type") in ("image_url", "input_image", "image"))


def decode(cls: type[M], body: bytes, limits: Caps | None = None) -> M:
    """Request bytes -> `cls`, or BadRequest worded like Ollama's decoder. Strict types (no
    "5" -> 5 coercion, as in Go); a top-level null leaves the field's zero value, as in Go."""
    paused = len(body) > OFFLOAD_BYTES and gc.isenabled()
    if paused:
        # a JSON tree has no cycles; a full collection triggered by its allocations would
        # traverse the whole heap holding the GIL (measured: a ~100 ms stall of the loop)
        gc.disable()
    try:
        return _decode(cls, body, limits)
    finally:
        if paused:
            gc.enable()


def _decode(cls: type[M], body: bytes, limits: Caps | None) -> M:
    if not body.strip():
        raise BadRequest("missing request body")
    lim = limits or caps()
    if (len(body) > _PRESCAN_BYTES and body.count(b",") > lim.max_json_values
            and _count_values(body) > lim.max_json_values):
        raise LimitExceeded(f"request body has more than {lim.max_json_values} JSON values")
    objects = 0

    def count_object(obj: JsonObject) -> JsonObject:
        nonlocal objects
        objects += 1
        if objects & 0x7FF == 0:
            time.sleep(0)  # in a worker thread: let the event loop have the GIL
        if objects > lim.max_json_objects:
            raise LimitExceeded(f"request body has more than {lim.max_json_objects} JSON "
                                "objects (OLLAMAPY_MAX_JSON_OBJECTS)")
        return obj

    try:
        data = json.loads(body, parse_constant=_reject_constant, object_hook=count_object)
    except json.JSONDecodeError as e:
        raise BadRequest(go_json_error(e)) from None
    except ValueError as e:  # undecodable bytes, or NaN/Infinity
        raise BadRequest(str(e)) from None
    except RecursionError:
        raise BadRequest("exceeded max depth") from None
    if not isinstance(data, dict):
        raise BadRequest(f"json: cannot unmarshal {json_kind(data)} into Go value of type "
                         f"api.{cls.__name__}")
    check_counts(data, lim)
    if any(v is None for v in data.values()):
        body = json.dumps({k: v for k, v in data.items() if v is not None}).encode()
    del data  # pydantic parses the bytes again: do not hold both trees at once
    try:
        return cls.model_validate_json(body, strict=True)
    except ValidationError as e:
        if e.errors()[0]["type"] != "json_invalid":
            raise BadRequest(_describe(cls, e)) from None
    # Python's parser took it and pydantic's did not: a lone UTF-16 surrogate escape
    # ("\ud800"), which Go's decoder (Ollama) reads as U+FFFD. So does this; a string
    # holding a surrogate could not be written back out as UTF-8 either. Unescaped, JSON
    # outside its strings is ASCII, so the whole text can be mended at once.
    try:
        text = json.dumps(json.loads(body), ensure_ascii=False)
    except RecursionError:
        raise BadRequest("exceeded max depth") from None
    try:
        return cls.model_validate_json(jsoncodec.replace_surrogates(text).encode(), strict=True)
    except ValidationError as e:
        raise BadRequest(_describe(cls, e)) from None
