"""Qwen3-Coder (`qwen3-coder`): ChatML with the tools listed as XML and calls written as
`<function=…><parameter=…>` blocks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ollamapy.api.inference import Message, Think, Tool
from ollamapy.inference.jsontypes import JsonObject
from ollamapy.inference.renderers._gojson import arg_text, dumps

IM_START, IM_END = "<|im_start|>", "<|im_end|>"
DEFAULT_SYSTEM = ("You are Qwen, a helpful AI assistant that can interact with a computer to "
                  "solve tasks.")
TOOL_INSTRUCTIONS = """

If you choose to call a function ONLY reply in the following format with NO suffix:

<tool_call>
<function=example_function_name>
<parameter=example_parameter_1>
value_1
</parameter>
<parameter=example_parameter_2>
This is the value for the second parameter
that can span
multiple lines
</parameter>
</function>
</tool_call>

<IMPORTANT>
Reminder:
- Function calls MUST follow the specified format: an inner <function=...></function> block \
must be nested within <tool_call></tool_call> XML tags
- Required parameters MUST be specified
- You may provide optional reasoning for your function call in natural language BEFORE the \
function call, but NOT after
- If there is no function call available, answer the question like normal with your current \
knowledge and do not tell the user about function calls
</IMPORTANT>"""


def _extra(obj: JsonObject, handled: set[str]) -> str:
    out = []
    for k, v in obj.items():
        if k in handled or v is None:
            continue
        text = dumps(v) if isinstance(v, dict | list) else arg_text(v)
        out.append(f"\n<{k}>{text}</{k}>")
    return "".join(out)


def _type(t: Any) -> str:
    if isinstance(t, str):
        return t
    if not t:
        return "[]"
    return t[0] if len(t) == 1 else dumps(t)


def tools_xml(tools: Sequence[Tool]) -> str:
    out = ["<tools>"]
    for t in tools:
        out.append(f"\n<function>\n<name>{t.function.name}</name>")
        if t.function.description:
            out.append(f"\n<description>{t.function.description}</description>")
        out.append("\n<parameters>")
        params = t.function.parameters or {}
        for name, p in (params.get("properties") or {}).items():
            p = p if isinstance(p, dict) else {}
            out.append(f"\n<parameter>\n<name>{name}</name>")
            if p.get("type"):
                out.append(f"\n<type>{_type(p['type'])}</type>")
            if p.get("description"):
                out.append(f"\n<description>{p['description']}</description>")
            out.append(_extra(p, {"type", "description"}))
            out.append("\n</parameter>")
        out.append(_extra(params, {"type", "properties"}))
        out.append("\n</parameters>\n</function>")
    out.append("\n</tools>")
    return "".join(out)


class Qwen3CoderRenderer:
    def render(self, messages: Sequence[Message], tools: Sequence[Tool] | None,
               think: Think) -> str:
        system = next((m.content for m in messages if m.role == "system" and m.content), "")
        msgs = [m for m in messages if m.role != "system"]
        out: list[str] = []
        if system or tools:
            out.append(IM_START + "system\n" + (system or DEFAULT_SYSTEM))
            if tools:
                out.append("\n\n# Tools\n\nYou have access to the following functions:\n\n")
                out.append(tools_xml(tools) + TOOL_INSTRUCTIONS)
            out.append(IM_END + "\n")
        for i, m in enumerate(msgs):
            last = i == len(msgs) - 1
            prefill = last and m.role == "assistant"
            if m.role == "assistant":
                out.append(IM_START + "assistant\n")
                if m.tool_calls:
                    if m.content:
                        out.append(m.content + "\n")
                    for c in m.tool_calls:
                        out.append(f"\n<tool_call>\n<function={c.function.name}>")
                        for k, v in c.function.arguments.items():
                            out.append(f"\n<parameter={k}>\n{arg_text(v)}\n</parameter>")
                        out.append("\n</function>\n</tool_call>")
                    out.append(IM_END + "\n")
                else:
                    out.append(m.content + ("" if prefill else IM_END + "\n"))
            elif m.role == "tool":
                if i == 0 or msgs[i - 1].role != "tool":
                    out.append(IM_START + "user")
                out.append("\n<tool_response>\n" + m.content + "\n</tool_response>")
                if last or msgs[i + 1].role != "tool":
                    out.append(IM_END + "\n")
            else:
                out.append(IM_START + m.role + "\n" + m.content + IM_END + "\n")
            if last and not prefill:
                out.append(IM_START + "assistant\n")
        return "".join(out)
