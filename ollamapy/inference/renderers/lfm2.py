"""LFM2 (`lfm2`, `lfm2-thinking`): ChatML after `<|startoftext|>`, tools as a JSON list in
`<|tool_list_start|>…<|tool_list_end|>` inside the system turn, calls as a Python-style list in
`<|tool_call_start|>…<|tool_call_end|>`, results wrapped in tool-response tags, earlier turns'
thinking dropped unless thinking is on for the thinking variant."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ollamapy.api.inference import Message, Think, Tool
from ollamapy.inference.jsontypes import JsonObject
from ollamapy.inference.renderers import _gojson
from ollamapy.inference.renderers.qwen3vl import thinking

BOS = "<|startoftext|>"
TOOL_LIST = ("<|tool_list_start|>", "<|tool_list_end|>")
TOOL_CALL = ("<|tool_call_start|>", "<|tool_call_end|>")
TOOL_RESPONSE = ("<|tool_response_start|>", "<|tool_response_end|>")
IMAGE = "<image>"


def lfm2_json(v: Any) -> str:
    """Go's encoder without HTML escaping, then Python's `json.dumps` spacing."""
    return _gojson.add_spaces(json.dumps(v, ensure_ascii=False, separators=(",", ":")))


def _calls(m: Message) -> str:
    parts = []
    for c in m.tool_calls or ():
        args = ",".join(f"{k}={lfm2_json(c.function.arguments[k])}"
                        for k in sorted(c.function.arguments))
        parts.append(f"{c.function.name}({args})")
    return TOOL_CALL[0] + "[" + ",".join(parts) + "]" + TOOL_CALL[1]


def _schema(t: Tool) -> JsonObject:
    return _gojson.tool(t)["function"] if t.function.name else _gojson.tool(t)


class LFM2Renderer:
    leading_bos = BOS

    def __init__(self, is_thinking: bool = False, image_marker: str | None = None) -> None:
        self.is_thinking = is_thinking
        self.image_marker = image_marker

    def _content(self, m: Message) -> str:
        marker = self.image_marker if self.image_marker is not None else IMAGE
        if not m.images or marker in m.content:
            return m.content
        return marker * len(m.images) + m.content

    def render(self, messages: Sequence[Message], tools: Sequence[Tool] | None,
               think: Think) -> str:
        out = [BOS]
        start = 1 if messages and messages[0].role == "system" else 0
        system = messages[0].content if start else ""
        if tools:
            system += ("\n" if system else "") + "List of tools: " + TOOL_LIST[0] + "["
            system += ", ".join(lfm2_json(_schema(t)) for t in tools) + "]" + TOOL_LIST[1]
        if system:
            out.append("<|im_start|>system\n" + system + "<|im_end|>\n")
        keep_past = self.is_thinking and think is not None and thinking(think, False)
        last_assistant = max((i for i in range(start, len(messages))
                              if messages[i].role == "assistant"), default=-1)
        for i in range(start, len(messages)):
            m = messages[i]
            prefill = i == len(messages) - 1 and m.role == "assistant"
            content = self._content(m)
            if m.role == "assistant" and m.tool_calls and TOOL_CALL[0] not in content:
                calls = _calls(m)
                content = calls + content if not content.strip() else calls + "\n" + content
            if (self.is_thinking and m.role == "assistant" and m.thinking
                    and "</think>" not in content):
                content = "<think>" + m.thinking + "</think>" + content
            if m.role == "assistant" and not keep_past and i != last_assistant:
                j = content.rfind("</think>")
                if j >= 0:
                    content = content[j + len("</think>"):].strip()
            if m.role == "tool" and TOOL_RESPONSE[0] not in content:
                content = TOOL_RESPONSE[0] + content + TOOL_RESPONSE[1]
            out.append(f"<|im_start|>{m.role}\n{content}")
            if not prefill:
                out.append("<|im_end|>\n")
        if not (messages and messages[-1].role == "assistant"):
            out.append("<|im_start|>assistant\n")
        return "".join(out)
