"""Nemotron 3 Nano / 3.5 Nano (`nemotron-3-nano`, `nemotron-3.5-nano`): ChatML with an always
present system turn, tools listed as XML (Qwen3-Coder style, schema values in Python-JSON
style), `/think` and `/no_think` toggles in user/system text (3 Nano only), empty `<think></think>`
blocks on history turns, images as `[img-N]` tags."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ollamapy.api.inference import Message, Think, Tool
from ollamapy.inference.jsontypes import JsonObject
from ollamapy.inference.renderers import _gojson
from ollamapy.inference.renderers.qwen3coder import TOOL_INSTRUCTIONS
from ollamapy.inference.renderers.qwen3vl import thinking


def _q(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def py_json(v: Any) -> str:
    """The template's `tojson`-like output: `": "` and `", "`, mapping keys sorted."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return _q(v)
    if isinstance(v, int | float):
        return json.dumps(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(py_json(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_q(str(k))}: {py_json(v[k])}" for k in sorted(v)) + "}"
    return _q(str(v))


def _py_props(props: JsonObject) -> str:
    return "{" + ", ".join(f"{_q(k)}: {_py_prop(p)}" for k, p in props.items()) + "}"


def _py_prop(p: Any) -> str:
    """A schema property in Ollama's struct field order (not sorted)."""
    if not isinstance(p, dict):
        return py_json(p)
    parts = []
    g = _gojson.prop(p)
    for k, v in g.items():
        if k == "anyOf":
            parts.append(f'"anyOf": [{", ".join(_py_prop(x) for x in v)}]')
        elif k == "properties":
            parts.append(f'"properties": {_py_props(v) if isinstance(v, dict) else py_json(v)}')
        else:
            parts.append(f"{_q(k)}: {py_json(v)}")
    return "{" + ", ".join(parts) + "}"


def template_value(v: Any) -> str:
    """How the template prints an argument: JSON for containers, Python's str() otherwise."""
    if v is None:
        return "None"
    if isinstance(v, bool):
        return "True" if v else "False"
    if isinstance(v, dict | list):
        return py_json(v)
    return _gojson.arg_text(v)


def _type(t: Any) -> str:
    if isinstance(t, str):
        return t
    return t[0] if len(t) == 1 else "[" + ", ".join(f"'{x}'" for x in t) + "]"


def render_tools(tools: Sequence[Tool]) -> str:
    out = ["# Tools\n\nYou have access to the following functions:\n\n<tools>"]
    for t in tools:
        fn = t.function
        out.append(f"\n<function>\n<name>{fn.name}</name>")
        if fn.description:
            out.append(f"\n<description>{fn.description.strip()}</description>")
        out.append("\n<parameters>")
        params = fn.parameters or {}
        for name, p in (params.get("properties") or {}).items():
            p = p if isinstance(p, dict) else {}
            out.append(f"\n<parameter>\n<name>{name}</name>")
            if p.get("type"):
                out.append(f"\n<type>{_type(p['type'])}</type>")
            if p.get("description"):
                out.append(f"\n<description>{p['description'].strip()}</description>")
            if p.get("enum"):
                out.append(f"\n<enum>{py_json(p['enum'])}</enum>")
            if p.get("anyOf"):
                out.append(f"\n<anyOf>[{', '.join(_py_prop(x) for x in p['anyOf'])}]</anyOf>")
            if p.get("items") is not None:
                out.append(f"\n<items>{py_json(p['items'])}</items>")
            if isinstance(p.get("properties"), dict):
                out.append(f"\n<properties>{_py_props(p['properties'])}</properties>")
            if p.get("required"):
                out.append(f"\n<required>{py_json(p['required'])}</required>")
            out.append("\n</parameter>")
        if params.get("$defs") is not None:
            out.append(f"\n<$defs>{template_value(params['$defs'])}</$defs>")
        if params.get("items") is not None:
            out.append(f"\n<items>{template_value(params['items'])}</items>")
        if params.get("required"):
            out.append(f"\n<required>{py_json(params['required'])}</required>")
        out.append("\n</parameters>\n</function>")
    out.append("\n</tools>" + TOOL_INSTRUCTIONS)
    return "".join(out)


def strip_toggles(s: str) -> str:
    s = s.replace("</think>", "<_end_think>").replace("/think", "").replace("/no_think", "")
    return s.replace("<_end_think>", "</think>")


def image_tags(content: str, count: int, offset: int) -> str:
    """Ollama's `[img-N]` tags: a `[img]` placeholder is numbered, else tags go in front."""
    if count == 0 or "[img-" in content:
        return content
    prefix = ""
    for i in range(count):
        tag = f"[img-{offset + i}]"
        if "[img]" in content:
            content = content.replace("[img]", tag, 1)
        else:
            prefix += tag
    if prefix and content and not content[0].isspace():
        prefix += " "
    return prefix + content


class NemotronRenderer:
    def __init__(self, v35: bool = False, image_marker: str | None = None) -> None:
        self.v35 = v35
        self.image_marker = image_marker

    def _thinking(self, messages: Sequence[Message], think: Think) -> bool:
        on = thinking(think, True)
        if self.v35:
            return on
        for m in messages:
            if m.role in ("user", "system"):
                if "/think" in m.content.replace("</think>", ""):
                    on = True
                elif "/no_think" in m.content:
                    on = False
        return on

    def _content(self, m: Message, offset: int) -> str:
        n = len(m.images or ())
        if self.image_marker is not None:
            return self.image_marker * n + m.content
        return image_tags(m.content, n, offset)

    def _build(self, m: Message) -> str:
        if m.thinking:
            if self.v35:
                return "<think>\n" + m.thinking + "</think>" + m.content
            return "<think>\n" + m.thinking + "\n</think>\n" + m.content
        if "<think>" not in m.content and "</think>" not in m.content:
            return "<think></think>" + m.content
        return m.content

    @staticmethod
    def _assistant(content: str, truncate: bool) -> str:
        if truncate and "<think>" in content and "</think>" in content:
            content = "<think></think>" + content.split("</think>")[-1]
        return content.strip()

    @staticmethod
    def _with_calls(content: str, truncate: bool) -> str:
        if not content.strip():
            return "<think></think>"
        if not truncate:
            return content.strip() + "\n"
        if "</think>" in content:
            content = content.split("</think>")[-1]
        elif "<think>" in content:
            content = content.split("<think>")[0]
        return ("<think></think>" + content.strip()).strip() + "\n"

    def render(self, messages: Sequence[Message], tools: Sequence[Tool] | None,
               think: Think) -> str:
        on = self._thinking(messages, think)
        medium = self.v35 and think == "medium"
        system = ""
        loop = list(messages)
        if loop and loop[0].role == "system":
            system = loop[0].content if self.v35 else strip_toggles(loop[0].content)
            loop = loop[1:]
        last_user = max((i for i, m in enumerate(loop) if m.role == "user"), default=-1)
        out = ["<|im_start|>system\n" + system]
        if tools:
            out.append(("\n\n" if system else "") + render_tools(tools))
        out.append("<|im_end|>\n")
        offset = 0
        for i, m in enumerate(loop):
            if m.role == "assistant":
                content = self._build(m)
                truncate = i < last_user
                out.append("<|im_start|>assistant\n")
                if m.tool_calls:
                    out.append(self._with_calls(content, truncate))
                    for c in m.tool_calls:
                        out.append(f"<tool_call>\n<function={c.function.name}>\n")
                        for k, v in c.function.arguments.items():
                            out.append(f"<parameter={k}>\n{template_value(v)}\n</parameter>\n")
                        out.append("</function>\n</tool_call>\n")
                else:
                    out.append(self._assistant(content, truncate))
                out.append("<|im_end|>\n")
            elif m.role in ("user", "system"):
                content = self._content(m, offset)
                offset += len(m.images or ())
                if not self.v35:
                    content = strip_toggles(content).strip()
                elif m.role == "user" and i == last_user and medium:
                    content += "\n\n{reasoning effort: efficient}"
                out.append(f"<|im_start|>{m.role}\n{content}<|im_end|>\n")
            elif m.role == "tool":
                content = self._content(m, offset)
                offset += len(m.images or ())
                if i > 0 and loop[i - 1].role != "tool":
                    out.append("<|im_start|>user\n")
                out.append("<tool_response>\n" + content + "\n</tool_response>\n")
                if not (i + 1 < len(loop) and loop[i + 1].role == "tool"):
                    out.append("<|im_end|>\n")
            else:
                out.append(f"<|im_start|>{m.role}\n{m.content}<|im_end|>\n")
        out.append("<|im_start|>assistant\n" + ("<think>\n" if on else "<think></think>"))
        return "".join(out)
