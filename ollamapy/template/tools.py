"""Tool calls out of raw model output, the way Ollama's Go-template path finds them.

The start tag comes from the template (first text inside its `{{ if .ToolCalls }}` branch, cut
before `{`): `<tool_call>`, `[TOOL_CALLS]`, ... or `{` when the template gives none. Text before
the tag streams as content; while a tag may be forming the text is held back; after the tag,
complete JSON values are scanned (string-aware brace matching) and turned into calls of the tools
the request supplied. Nothing parsed -> the held text is returned as content at the end.
"""

from __future__ import annotations

import json
import secrets
import string
from dataclasses import dataclass, field
from typing import Any

from ollamapy.inference.jsontypes import JsonObject
from ollamapy.template.gotemplate import Branch, Template, Text


def tool_tag(tmpl: Template | None) -> str:
    """The tool-call start tag a Go template teaches its model ("" when none is visible)."""
    if tmpl is None:
        return ""
    node = _find_tool_calls_branch(tmpl.nodes)
    if node is None:
        return ""
    text = _first_text(node.body)
    if text is None:
        return ""
    return text.strip().replace("\r\n", "\n").split("{")[0]


def _mentions_tool_calls(b: Branch) -> bool:
    return any(a.kind == "field" and "ToolCalls" in a.chain for c in b.pipe.cmds for a in c.args)


def _find_tool_calls_branch(nodes: list[Any]) -> Branch | None:
    for n in nodes:
        if not isinstance(n, Branch):
            continue
        if n.kind == "if" and _mentions_tool_calls(n):
            return n
        for sub in (n.body, n.else_body or []):
            found = _find_tool_calls_branch(sub)
            if found is not None:
                return found
    return None


def _first_text(nodes: list[Any]) -> str | None:
    for n in nodes:
        if isinstance(n, Text):
            return n.text
        if isinstance(n, Branch):
            for sub in (n.body, n.else_body or []):
                t = _first_text(sub)
                if t is not None:
                    return t
            return None
        return None  # an action comes first: no literal tag
    return None


def tag_from_jinja(source: str) -> str:
    """Best-effort start tag for GGUF (Jinja) templates that we parse ourselves."""
    for tag in ("<tool_call>", "[TOOL_CALLS]", "<|python_tag|>", "<function_call>",
                "functools["):
        if tag in source:
            return tag
    return "{"


def call_id() -> str:
    """Ollama's Go-template path id: call_ + 8 random [a-z0-9]."""
    alphabet = string.ascii_lowercase + string.digits
    return "call_" + "".join(secrets.choice(alphabet) for _ in range(8))


def scan_json(s: str, start: int) -> int:
    """End index (exclusive) of the JSON object/array starting at s[start], or -1 if incomplete."""
    depth = 0
    in_str = False
    esc = False
    for i in range(start, len(s)):
        c = s[i]
        if in_str:
            if esc:
                esc = False
            elif c == "\\":
                esc = True
            elif c == '"':
                in_str = False
            continue
        if c == '"':
            in_str = True
        elif c in "{[":
            depth += 1
        elif c in "}]":
            depth -= 1
            if depth == 0:
                return i + 1
    return -1


def _args(v: Any) -> JsonObject | None:
    if isinstance(v, dict):
        return v
    if isinstance(v, str):
        try:
            parsed = json.loads(v)
        except ValueError:
            return None
        return parsed if isinstance(parsed, dict) else None
    return None


def extract_calls(value: Any, names: list[str]) -> list[tuple[str, JsonObject]]:
    """Tool calls in one parsed JSON value: {"name", "arguments"|"parameters"}, {"<tool>": args},
    lists of those, or the same nested one level down (e.g. {"function": {...}})."""
    found: list[tuple[str, JsonObject]] = []
    if isinstance(value, list):
        for item in value:
            found.extend(extract_calls(item, names))
        return found
    if not isinstance(value, dict):
        return found
    name = value.get("name")
    if isinstance(name, str):
        match = _match_name(name, names)
        if match is not None:
            for key in ("arguments", "parameters"):
                if key in value:
                    a = _args(value[key])
                    if a is not None:
                        return [(match, a)]
            if len(value) == 1:
                return [(match, {})]
    for key, v in value.items():
        if key in names:
            a = _args(v)
            if a is not None:
                return [(key, a)]
    for v in value.values():
        if isinstance(v, dict | list):
            found.extend(extract_calls(v, names))
            if found:
                return found
    return found


def _match_name(name: str, names: list[str]) -> str | None:
    if name in names:
        return name
    # the longest supplied tool name the model's text names (e.g. "functions.get_weather")
    best = None
    for n in names:
        if n and n in name and (best is None or len(n) > len(best)):
            best = n
    return best


@dataclass
class ToolCall:
    name: str
    arguments: JsonObject
    index: int
    id: str = field(default_factory=call_id)

    def ollama(self) -> JsonObject:
        return {"id": self.id, "function": {"index": self.index, "name": self.name,
                                            "arguments": self.arguments}}


@dataclass
class ToolParser:
    """Incremental: feed output pieces with `add`, then `finish` once at the end."""

    tag: str
    names: list[str]
    buffer: str = ""
    parsing: bool = False
    done: bool = False          # gave up: everything else is plain content
    calls: list[ToolCall] = field(default_factory=list)
    _seen_text: bool = False

    def add(self, piece: str) -> tuple[str, list[ToolCall]]:
        if self.done:
            return piece, []
        self.buffer += piece
        content = ""
        if not self.parsing:
            tag = self.tag or "{"
            if tag == "{":
                stripped = self.buffer.lstrip()
                if not stripped:
                    return "", []
                if self._seen_text or not stripped.startswith("{"):
                    # `{` only counts as a tool call when it is the first thing said
                    self.done = True
                    out, self.buffer = self.buffer, ""
                    return out, []
                self.parsing = True
                self.buffer = stripped
            else:
                i = self.buffer.find(tag)
                if i < 0:
                    keep = _overlap(self.buffer, tag)
                    content = self.buffer[:len(self.buffer) - keep]
                    self.buffer = self.buffer[len(self.buffer) - keep:]
                    if content.strip():
                        self._seen_text = True
                    return content, []
                content = self.buffer[:i]
                self.buffer = self.buffer[i + len(tag):]
                self.parsing = True
        calls = self._drain()
        if self.done and not self.calls:
            content += self.finish()
        return content, calls

    def _drain(self) -> list[ToolCall]:
        new: list[ToolCall] = []
        while True:
            s = self.buffer
            j = 0
            while j < len(s) and s[j] not in "{[":
                j += 1
            if j == len(s):
                return new
            end = scan_json(s, j)
            if end < 0:
                return new
            try:
                value = json.loads(s[j:end])
            except ValueError:
                self.done = True
                return new
            found = extract_calls(value, self.names)
            if not found:
                self.done = True
                return new
            for name, args in found:
                call = ToolCall(name, args, len(self.calls))
                self.calls.append(call)
                new.append(call)
            self.buffer = s[end:]
            # tags such as [TOOL_CALLS] may repeat between calls
            if self.tag and self.tag != "{":
                self.buffer = self.buffer.replace(self.tag, "", 1) if self.buffer.lstrip(
                    ).startswith(self.tag) else self.buffer

    def finish(self) -> str:
        """Text still held back, returned as content when it turned out not to be tool calls."""
        if self.calls:
            self.buffer = ""
            return ""
        out = self.buffer
        if self.parsing and self.tag and self.tag != "{":
            out = self.tag + out
        self.buffer = ""
        self.parsing = False
        return out


def _overlap(s: str, tag: str) -> int:
    """Length of the longest suffix of s that is a prefix of tag."""
    for k in range(min(len(tag) - 1, len(s)), 0, -1):
        if s.endswith(tag[:k]):
            return k
    return 0
