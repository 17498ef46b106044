"""Request bodies -> pydantic models, with the error texts Ollama's Go JSON decoder produces.

Every route family decodes through `decode` so a malformed body reads the same everywhere:
empty -> "missing request body", syntax -> Go's "invalid character ..." wording, wrong type ->
"json: cannot unmarshal <kind> into Go struct field <Type>.<field> of type <go type>".
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from ollamapy.errors import BadRequest

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
    go_type = next((g for prefix, g in _GO_TYPES if err["type"].startswith(prefix)), "value")
    return (f"json: cannot unmarshal {json_kind(err.get('input'))} into Go struct field "
            f"{cls.__name__}.{loc} of type {go_type}")


def _reject_constant(name: str) -> Any:
    """NaN/Infinity are not JSON (Go refuses them; llama-server answers them with a 500)."""
    raise ValueError(f"invalid character '{name[0]}' looking for beginning of value")


def decode(cls: type[M], body: bytes) -> M:
    """Request bytes -> `cls`, or BadRequest worded like Ollama's decoder. Strict types (no
    "5" -> 5 coercion, as in Go); a top-level null leaves the field's zero value, as in Go."""
    if not body.strip():
        raise BadRequest("missing request body")
    try:
        data = json.loads(body, parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        raise BadRequest(go_json_error(e)) from None
    except ValueError as e:  # undecodable bytes, or NaN/Infinity
        raise BadRequest(str(e)) from None
    except RecursionError:
        raise BadRequest("exceeded max depth") from None
    if not isinstance(data, dict):
        raise BadRequest(f"json: cannot unmarshal {json_kind(data)} into Go value of type "
                         f"api.{cls.__name__}")
    if any(v is None for v in data.values()):
        body = json.dumps({k: v for k, v in data.items() if v is not None}).encode()
    try:
        return cls.model_validate_json(body, strict=True)
    except ValidationError as e:
        raise BadRequest(_describe(cls, e)) from None


def go_time(dt: datetime) -> str:
    """RFC 3339 with the local offset and trimmed fraction, as Go marshals time.Time."""
    s = dt.isoformat(timespec="microseconds")
    base, rest = s[:19], s[19:]
    if rest.startswith("."):
        frac, tz = rest[1:7].rstrip("0"), rest[7:]
        s = base + (f".{frac}" if frac else "") + tz
    return s[:-6] + "Z" if s.endswith("+00:00") else s
