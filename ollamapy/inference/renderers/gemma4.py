"""Gemma 4 (`gemma4`, `gemma4-small`, `gemma4-large`): `<bos>` then `<|turn>role … <turn|>` turns,
`<|think|>` in the system turn when thinking is on, tools declared in Gemma's own schema syntax
(`<|tool>declaration:name{…}<tool|>`, strings in `<|"|>`), calls and tool responses folded into
the model turn, images as `[img-N]` tags."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ollamapy.api.inference import Message, Think, Tool
from ollamapy.inference.jsontypes import JsonObject
from ollamapy.inference.renderers.nemotron import image_tags
from ollamapy.inference.renderers.qwen3vl import thinking

Q = '<|"|>'
STANDARD_KEYS = frozenset({"description", "type", "properties", "required", "nullable"})


def _num(v: float) -> str:
    if v == int(v) and abs(v) < 2**63:
        return str(int(v))
    return repr(v)


def arg_value(v: Any) -> str:
    """A call argument or tool response in Gemma's syntax (map keys sorted, bare)."""
    if v is None:
        return "null"
    if isinstance(v, str):
        return Q + v + Q
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return _num(v)
    if isinstance(v, dict):
        return "{" + ",".join(f"{k}:{arg_value(v[k])}" for k in sorted(v)) + "}"
    if isinstance(v, list):
        return "[" + ",".join(arg_value(x) for x in v) + "]"
    return str(v)


def schema_value(v: Any) -> str:
    """An unrecognised schema value (map keys quoted and sorted)."""
    if isinstance(v, dict):
        return "{" + ",".join(f"{Q}{k}{Q}:{schema_value(v[k])}" for k in sorted(v)) + "}"
    if isinstance(v, list):
        return "[" + ",".join(schema_value(x) for x in v) + "]"
    return arg_value(v)


def _types(v: Any) -> list[str]:
    if isinstance(v, str):
        return [v.upper()]
    if isinstance(v, list):
        return [x.upper() for x in v if isinstance(x, str)]
    return []


def _type_field(names: list[str]) -> str:
    if len(names) == 1:
        return f"type:{Q}{names[0]}{Q}"
    return "type:[" + ",".join(Q + n + Q for n in names) + "]"


def _strings(v: Any) -> list[str]:
    return [x for x in v if isinstance(x, str)] if isinstance(v, list) else []


def _required(v: Any) -> str:
    return "required:[" + ",".join(Q + r + Q for r in _strings(v)) + "]"


def _bare_types(p: Any) -> list[str] | None:
    """A union of bare `{"type": ...}` branches as one type list (Gemma has no anyOf)."""
    branches = p.get("anyOf") if isinstance(p, dict) else None
    if not isinstance(branches, list) or not branches:
        return None
    out: list[str] = []
    for b in branches:
        if not isinstance(b, dict) or set(b) != {"type"} or not b["type"]:
            return None
        for t in [b["type"]] if isinstance(b["type"], str) else b["type"]:
            if t not in out:
                out.append(t)
    return out or None


def _upstream_type(types: list[str]) -> str:
    return types[0] if len(types) == 1 else "[" + ", ".join(f"'{t.upper()}'" for t in types) + "]"


def top_level(p: JsonObject) -> JsonObject:
    """A request's tool property as the template sees it (a multi-type union becomes the
    template's stringified upper-case list, as upstream renders it)."""
    out: JsonObject = {}
    t = p.get("type")
    types = [t] if isinstance(t, str) else _strings(t)
    if types:
        out["type"] = _upstream_type(types)
    elif (union := _bare_types(p)) is not None:
        out["type"] = _upstream_type(union)
    for k in ("description", "enum", "items"):
        if p.get(k) not in (None, "", []):
            out[k] = p[k]
    if isinstance(p.get("properties"), dict):
        out["properties"] = {k: top_level(v) if isinstance(v, dict) else v
                             for k, v in p["properties"].items()}
    if p.get("required"):
        out["required"] = p["required"]
    return out


def items_spec(items: JsonObject) -> str:
    parts = []
    for key in sorted(items):
        v = items[key]
        if v is None:
            continue
        if key == "properties":
            parts.append("properties:{" + (properties(v) if isinstance(v, dict) else "") + "}")
        elif key == "required":
            parts.append(_required(v))
        elif key == "type":
            names = _types(v)
            if names:
                parts.append(_type_field(names))
        else:
            parts.append(f"{key}:{schema_value(v)}")
    return ",".join(parts)


def properties(props: JsonObject) -> str:
    out = []
    for name in sorted(props):
        prop = props[name]
        if name in STANDARD_KEYS or not isinstance(prop, dict):
            continue
        fields: list[str] = []
        if isinstance(prop.get("description"), str) and prop["description"]:
            fields.append(f"description:{Q}{prop['description']}{Q}")
        names = _types(prop.get("type"))
        first = names[0] if names else ""
        if first == "STRING" and isinstance(prop.get("enum"), list) and prop["enum"]:
            fields.append("enum:[" + ",".join(Q + str(e) + Q for e in prop["enum"]) + "]")
        if first == "ARRAY" and isinstance(prop.get("items"), dict) and prop["items"]:
            fields.append("items:{" + items_spec(prop["items"]) + "}")
        if prop.get("nullable") is True:
            fields.append("nullable:true")
        if first == "OBJECT":
            nested = prop.get("properties")
            fields.append("properties:{" + properties(nested if isinstance(nested, dict)
                                                      else prop) + "}")
            if _strings(prop.get("required")):
                fields.append(_required(prop["required"]))
        if names:
            fields.append(_type_field(names))
        out.append(name + ":{" + ",".join(fields) + "}")
    return ",".join(out)


def declaration(t: Tool) -> str:
    fn = t.function
    out = f"<|tool>declaration:{fn.name}{{description:{Q}{fn.description or ''}{Q}"
    params = fn.parameters or {}
    props = params.get("properties")
    ptype = params.get("type") if isinstance(params.get("type"), str) else ""
    if props is not None or ptype:
        fields = []
        if isinstance(props, dict) and props:
            fields.append("properties:{" + properties({k: top_level(v) if isinstance(v, dict)
                                                       else v for k, v in props.items()}) + "}")
        if _strings(params.get("required")):
            fields.append(_required(params["required"]))
        if ptype:
            fields.append(f"type:{Q}{ptype.upper()}{Q}")
        out += ",parameters:{" + ",".join(fields) + "}"
    return out + "}<tool|>"


def strip_thinking(text: str) -> str:
    out = []
    while True:
        start = text.find("<|channel>")
        if start < 0:
            out.append(text)
            break
        out.append(text[:start])
        end = text.find("<channel|>", start)
        if end < 0:
            break
        text = text[end + len("<channel|>"):]
    return "".join(out).strip()


class Gemma4Renderer:
    leading_bos = "<bos>"

    def __init__(self, empty_block_on_nothink: bool = False,
                 image_marker: str | None = None) -> None:
        self.empty_block_on_nothink = empty_block_on_nothink
        self.image_marker = image_marker

    def _content(self, m: Message, content: str, offset: list[int]) -> str:
        n = len(m.images or ())
        if n == 0:
            return content
        if self.image_marker is not None:
            out = self.image_marker * n + content
        else:
            out = image_tags(content, n, offset[0])
        offset[0] += n
        return out

    @staticmethod
    def _response_name(m: Message, calls: Sequence[Any]) -> str:
        name = m.tool_name or "unknown"
        if m.tool_call_id:
            for c in calls:
                if c.id == m.tool_call_id:
                    return str(c.function.name)
        return name

    def render(self, messages: Sequence[Message], tools: Sequence[Tool] | None,
               think: Think) -> str:
        out = ["<bos>"]
        has_system = bool(messages) and messages[0].role in ("system", "developer")
        loop = list(messages[1:] if has_system else messages)
        has_think = think is not None and thinking(think, False)
        if has_system or tools or has_think:
            out.append("<|turn>system\n" + ("<|think|>\n" if has_think else ""))
            if has_system and messages[0].content:
                out.append(messages[0].content.strip())
            out.extend(declaration(t) for t in tools or ())
            out.append("<turn|>\n")
        last_user = max((i for i, m in enumerate(loop) if m.role == "user"), default=-1)
        offset = [0]
        prev_type = prev_role = ""
        for i, m in enumerate(loop):
            if m.role == "tool":
                continue
            prev_type = ""
            role = "model" if m.role == "assistant" else m.role
            if not (role == "model" and prev_role == "assistant"):
                out.append(f"<|turn>{role}\n")
            if m.role == "assistant" and m.thinking and i > last_user:
                out.append("<|channel>thought\n" + m.thinking + "\n<channel|>")
            calls = m.tool_calls or []
            for c in calls:
                args = c.function.arguments
                out.append(f"<|tool_call>call:{c.function.name}{{"
                           + ",".join(f"{k}:{arg_value(args[k])}" for k in sorted(args))
                           + "}<tool_call|>")
            if calls:
                prev_type = "tool_call"
            responded = False
            if calls:
                k = i + 1
                while k < len(loop) and loop[k].role == "tool":
                    resp = self._content(loop[k], loop[k].content, offset)
                    out.append(f"<|tool_response>response:{self._response_name(loop[k], calls)}"
                               f"{{value:{arg_value(resp)}}}<tool_response|>")
                    responded, prev_type = True, "tool_response"
                    k += 1
            had_content = False
            if role == "model":
                if m.content or m.images:
                    out.append(self._content(m, strip_thinking(m.content), offset))
                    had_content = bool(strip_thinking(m.content).strip() or m.images)
            else:
                out.append(self._content(m, m.content.strip(), offset))
                had_content = bool(m.content.strip() or m.images)
            nxt = next((x.role for x in loop[i + 1:] if x.role != "tool"), "")
            continues = role == "model" and nxt == "assistant" and (not calls or responded)
            if prev_type == "tool_call" and not responded:
                out.append("<|tool_response>")
            elif not continues and not (responded and not had_content and nxt == ""):
                out.append("<turn|>\n")
            prev_role = m.role
        if prev_type not in ("tool_response", "tool_call"):
            out.append("<|turn>model\n")
            if self.empty_block_on_nothink and not has_think:
                out.append("<|channel>thought\n<channel|>")
        elif prev_type == "tool_response" and has_think:
            out.append("<|channel>thought\n")
        return "".join(out)
