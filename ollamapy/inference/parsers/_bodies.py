"""Call bodies of the common tool-call formats: JSON objects, Qwen's XML-ish parameters,
GLM's key/value tags and Python-style calls (bounded, parsed with `ast`, never evaluated)."""

from __future__ import annotations

import ast
import io
import json
import keyword
import re
import tokenize
from typing import Any

from ollamapy.inference.jsontypes import JsonObject
from ollamapy.inference.parsers._tagged import BadCall, Call, Schemas, json_args
from ollamapy.template.tools import scan_json

MAX_BODY = 1 << 20  # a call body larger than this is not parsed as a call


def json_call(obj: Any, args_key: str = "arguments") -> Call:
    if not isinstance(obj, dict):
        raise BadCall("call is not an object")
    if "function" in obj and isinstance(obj["function"], dict):
        obj = obj["function"]
    name = obj.get("name")
    if not isinstance(name, str) or not name:
        raise BadCall("call has no name")
    raw = obj.get(args_key, obj.get("parameters" if args_key == "arguments" else "arguments"))
    return name, json_args(raw)


def json_values(body: str) -> list[Any]:
    """Every complete JSON object/array in body, in order (separators between are ignored)."""
    out: list[Any] = []
    i = 0
    while True:
        starts = [j for j in (body.find("{", i), body.find("[", i)) if j >= 0]
        if not starts:
            return out
        j = min(starts)
        end = scan_json(body, j)
        if end < 0:
            raise BadCall("incomplete JSON")
        out.append(json.loads(body[j:end]))
        i = end


def hermes_body(body: str, _schemas: Schemas) -> list[Call]:
    """`{"name": ..., "arguments": {...}}` (Hermes / Qwen `<tool_call>` JSON)."""
    if len(body) > MAX_BODY:
        raise BadCall("too large")
    return [json_call(json.loads(body))]


def json_list_body(body: str, _schemas: Schemas) -> list[Call]:
    """One or more call objects, or arrays of them (llama 3.x JSON, mistral `[TOOL_CALLS]`)."""
    if len(body) > MAX_BODY:
        raise BadCall("too large")
    calls: list[Call] = []
    values = json_values(body)
    if not values:
        raise BadCall("no JSON")
    for v in values:
        for item in v if isinstance(v, list) else [v]:
            calls.append(json_call(item))
    return calls


# -- Qwen3-Coder XML ---------------------------------------------------------------------------

_FUNC = re.compile(r"<function=([^>]+)>")
_PARAM = re.compile(r"<parameter=([^>]+)>(.*?)(?:</parameter>|(?=<parameter=)|(?=</function>)|\Z)",
                    re.S)


def _types(schema: JsonObject | None, name: str) -> list[str]:
    props = (schema or {}).get("properties") or {}
    prop = props.get(name) if isinstance(props, dict) else None
    if not isinstance(prop, dict):
        return []
    if isinstance(prop.get("anyOf"), list):
        out: list[str] = []
        for alt in prop["anyOf"]:
            t = alt.get("type") if isinstance(alt, dict) else None
            out += [t] if isinstance(t, str) else list(t or [])
        return out
    t = prop.get("type")
    return [t] if isinstance(t, str) else [x for x in t or [] if isinstance(x, str)]


def _int(raw: str) -> int | None:
    if re.fullmatch(r"[+-]?\d+", raw):
        return int(raw)
    return None


def typed_value(raw: str, types: list[str]) -> Any:
    """A string value coerced to the declared type (null, then boolean, integer, number,
    array, object, string), the order Ollama's qwen3-coder parser tries them in."""
    if raw.lower() == "null":
        return None
    if not types:
        return raw
    only = len(types) == 1
    if "boolean" in types:
        if raw.lower() in ("true", "false"):
            return raw.lower() == "true"
        if only:
            return False
    if "integer" in types:
        i = _int(raw)
        if i is not None:
            return i
        if only:
            return raw
    if "number" in types:
        try:
            f = float(raw)
        except ValueError:
            f = None
        if f is not None and f == f and f not in (float("inf"), float("-inf")):
            return int(f) if f.is_integer() else f
        if only:
            return raw
    for kind, py in (("array", list), ("object", dict)):
        if kind in types:
            try:
                v = json.loads(raw)
            except ValueError:
                v = None
            if isinstance(v, py):
                return v
            if only:
                return raw
    return raw


def qwen_xml_body(body: str, schemas: Schemas) -> list[Call]:
    """`<function=name><parameter=k>\\nvalue\\n</parameter>...</function>`."""
    m = _FUNC.search(body)
    if m is None or len(body) > MAX_BODY:
        raise BadCall("no <function=...>")
    name = m.group(1).strip()
    args: JsonObject = {}
    for pm in _PARAM.finditer(body, m.end()):
        raw = pm.group(2)
        raw = raw[1:] if raw.startswith("\n") else raw
        raw = raw[:-1] if raw.endswith("\n") else raw
        key = pm.group(1).strip()
        args[key] = typed_value(raw, _types(schemas.get(name), key))
    return [(name, args)]


# -- GLM-4.x key/value tags --------------------------------------------------------------------

_KV = re.compile(r"<arg_key>(.*?)</arg_key>\s*<arg_value>(.*?)</arg_value>", re.S)


def glm_body(body: str, schemas: Schemas) -> list[Call]:
    """`name<arg_key>k</arg_key><arg_value>v</arg_value>...`; values typed by the schema
    (strings stay strings, anything else is JSON when it parses)."""
    i = body.find("<arg_key>")
    name = (body if i < 0 else body[:i]).strip()
    if not name or len(body) > MAX_BODY:
        raise BadCall("no name")
    args: JsonObject = {}
    for km in _KV.finditer(body):
        key, raw = km.group(1).strip(), km.group(2)
        types = _types(schemas.get(name), key)
        if types == ["string"]:
            args[key] = raw
            continue
        try:
            args[key] = json.loads(raw)
        except ValueError:
            args[key] = typed_value(raw, types) if types else raw
    return [(name, args)]


# -- Python-style calls ------------------------------------------------------------------------

_CONSTS = {"true": True, "false": False, "null": None, "none": None}


def _literal(node: ast.expr) -> Any:
    if isinstance(node, ast.Name) and node.id.lower() in _CONSTS:
        return _CONSTS[node.id.lower()]
    if isinstance(node, ast.List | ast.Tuple):
        return [_literal(e) for e in node.elts]
    if isinstance(node, ast.Dict):
        return {_literal(k) if k is not None else None: _literal(v)
                for k, v in zip(node.keys, node.values, strict=True)}
    return ast.literal_eval(node)


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return _dotted(node.value) + "." + node.attr
    raise BadCall("not a function name")


_MANGLE = "_kw_"


def _unkeyword(src: str) -> str:
    """`f(from="x")` is not Python; rename keyword-named arguments so `ast` can read them."""
    try:
        toks = list(tokenize.generate_tokens(io.StringIO(src).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        raise BadCall("not Python calls") from None
    out = []
    for i, t in enumerate(toks):
        nxt = toks[i + 1] if i + 1 < len(toks) else None
        if (t.type == tokenize.NAME and keyword.iskeyword(t.string) and nxt is not None
                and nxt.string == "="):
            t = t._replace(string=_MANGLE + t.string)
        out.append((t.type, t.string))
    return tokenize.untokenize(out)


def python_calls_body(body: str, _schemas: Schemas) -> list[Call]:
    """`[f(a=1), g(b="x")]`, `f(a=1)` or one call per line (LFM2, Olmo 3)."""
    if len(body) > 1 << 16:
        raise BadCall("too large")
    try:
        tree = ast.parse(_unkeyword(body.strip()), mode="exec")
    except (SyntaxError, RecursionError, MemoryError, ValueError):
        raise BadCall("not Python calls") from None
    nodes: list[ast.expr] = []
    for stmt in tree.body:
        if not isinstance(stmt, ast.Expr):
            raise BadCall("not a call")
        v = stmt.value
        nodes += list(v.elts) if isinstance(v, ast.List | ast.Tuple) else [v]
    calls: list[Call] = []
    for n in nodes:
        if not isinstance(n, ast.Call) or n.args:
            raise BadCall("not a keyword call")
        args = {kw.arg.removeprefix(_MANGLE): _literal(kw.value)
                for kw in n.keywords if kw.arg is not None}
        calls.append((_dotted(n.func), args))
    if not calls:
        raise BadCall("no calls")
    return calls
