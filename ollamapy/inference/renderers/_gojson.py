"""JSON the way Ollama's Go renderers write it: struct field order for tools (not the order the
client sent), `omitempty`, a lone property type as a string, HTML-safe escapes (`<` -> \\u003c),
and optionally a space after every `:` and `,` outside strings (Python's `json.dumps` look)."""

from __future__ import annotations

import json
from typing import Any

from ollamapy.api.inference import Tool
from ollamapy.inference.jsontypes import JsonObject

_PROP_FIELDS = ("anyOf", "type", "items", "description", "enum", "properties", "required")
_PARAM_FIELDS = ("type", "$defs", "items", "required", "properties")


def _go_escape(s: str) -> str:
    return (s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def dumps(v: Any, spaces: bool = False) -> str:
    """Go's json.Marshal (maps keep the order given), then spaces if asked."""
    out = _go_escape(json.dumps(v, ensure_ascii=False, separators=(",", ":")))
    return add_spaces(out) if spaces else out


def add_spaces(s: str) -> str:
    out: list[str] = []
    in_str = esc = False
    for c in s:
        out.append(c)
        if in_str:
            if esc:
                esc = False
            elif c == "\\":
                esc = True
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif c in ":,":
            out.append(" ")
    return "".join(out)


def _ptype(t: Any) -> Any:
    if isinstance(t, list):
        return t[0] if len(t) == 1 else t
    return t


def prop(p: Any) -> Any:
    if not isinstance(p, dict):
        return p
    out: JsonObject = {}
    for k in _PROP_FIELDS:
        v = p.get(k)
        if v in (None, "", [], {}) and k != "properties":
            continue
        if k == "properties":
            if v is None:
                continue
            v = {name: prop(sub) for name, sub in v.items()} if isinstance(v, dict) else v
        elif k == "anyOf" and isinstance(v, list):
            v = [prop(x) for x in v]
        elif k == "type":
            v = _ptype(v)
        out[k] = v
    return out


def parameters(p: JsonObject) -> JsonObject:
    out: JsonObject = {}
    for k in _PARAM_FIELDS:
        v = p.get(k)
        if k == "type":
            out[k] = v if isinstance(v, str) else ""
        elif k == "properties":
            out[k] = ({n: prop(s) for n, s in v.items()} if isinstance(v, dict) else None)
        elif v not in (None, [], {}, ""):
            out[k] = v
    return out


def tool(t: Tool) -> JsonObject:
    fn: JsonObject = {"name": t.function.name}
    if t.function.description:
        fn["description"] = t.function.description
    fn["parameters"] = parameters(t.function.parameters)
    out: JsonObject = {"type": t.type}
    if t.items not in (None, "", [], {}):
        out["items"] = t.items
    out["function"] = fn
    return out


def arg_text(v: Any) -> str:
    """A tool-call argument as Qwen's XML shows it: strings bare, containers as JSON,
    scalars the way Go's %v prints them."""
    if v is None:
        return "null"
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dict | list):
        return dumps(v)
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e21:
        return str(int(v))
    return str(v)
