"""DeepSeek V3.1 (`deepseek3.1`): `<｜User｜>`/`<｜Assistant｜>` turns, `<think>` or `</think>`
after the assistant tag, tools described as Markdown with JSON schemas, calls and outputs in
DeepSeek's tool tokens."""

from __future__ import annotations

from collections.abc import Sequence

from ollamapy.api.inference import Message, Think, Tool
from ollamapy.inference.renderers import _gojson
from ollamapy.inference.renderers.qwen3vl import thinking

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
USER, ASSISTANT = "<｜User｜>", "<｜Assistant｜>"
CALLS_BEGIN, CALLS_END = "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>"
CALL_BEGIN, CALL_END, SEP = "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>", "<｜tool▁sep｜>"
OUT_BEGIN, OUT_END = "<｜tool▁output▁begin｜>", "<｜tool▁output▁end｜>"

TOOL_USAGE = (
    "\nIMPORTANT: ALWAYS adhere to this exact format for tool use:\n"
    f"{CALLS_BEGIN}{CALL_BEGIN}tool_call_name{SEP}tool_call_arguments{CALL_END}"
    "{{additional_tool_calls}}" + CALLS_END + "\n\nWhere:\n\n"
    "- `tool_call_name` must be an exact match to one of the available tools\n"
    "- `tool_call_arguments` must be valid JSON that strictly follows the tool's Parameters "
    "Schema\n- For multiple tool calls, chain them directly without separators or spaces\n")


class DeepSeek31Renderer:
    leading_bos = BOS

    def __init__(self, is_thinking: bool = True) -> None:
        self.is_thinking = is_thinking

    def render(self, messages: Sequence[Message], tools: Sequence[Tool] | None,
               think: Think) -> str:
        on = self.is_thinking and thinking(think, False)
        out = [BOS, "\n\n".join(m.content for m in messages if m.role == "system")]
        if tools:
            out.append("\n\n## Tools\nYou have access to the following tools:\n")
            for t in tools:
                out.append(f"\n### {t.function.name}\nDescription: {t.function.description or ''}")
                out.append("\n\nParameters: "
                           + _gojson.dumps(_gojson.parameters(t.function.parameters)) + "\n")
            out.append(TOOL_USAGE)
        last_user = max((i for i, m in enumerate(messages) if m.role == "user"), default=-1)
        is_tool = is_last_user = False
        for i, m in enumerate(messages):
            if m.role == "user":
                is_tool, is_last_user = False, True
                out.append(USER + m.content)
            elif m.role == "assistant":
                if m.tool_calls:
                    if is_last_user:
                        out.append(ASSISTANT + "</think>")
                    is_last_user = is_tool = False
                    out.append(m.content + CALLS_BEGIN)
                    for c in m.tool_calls:
                        out.append(CALL_BEGIN + c.function.name + SEP
                                   + _gojson.dumps(c.function.arguments) + CALL_END)
                    out.append(CALLS_END + EOS)
                    continue
                if is_last_user:
                    current = i > last_user
                    out.append(ASSISTANT + ("<think>" if m.thinking and on and current
                                            else "</think>"))
                is_last_user = False
                content = m.content
                if is_tool:
                    is_tool = False
                elif "</think>" in content:
                    content = content.split("</think>", 1)[1]
                out.append(content + EOS)
            elif m.role == "tool":
                is_last_user, is_tool = False, True
                out.append(OUT_BEGIN + m.content + OUT_END)
        if is_last_user and not is_tool:
            out.append(ASSISTANT + ("<think>" if on else "</think>"))
        return "".join(out)
