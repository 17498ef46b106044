"""Qwen3-VL (`qwen3-vl-instruct`, `qwen3-vl-thinking`: JSON tool calls) and Qwen 3.5
(`qwen3.5`: Qwen3-Coder-style XML calls, `<think>` blocks, an empty think block when thinking
is off). Images go in front of their message's text."""

from __future__ import annotations

from collections.abc import Sequence

from ollamapy.api.inference import Message, Think, Tool
from ollamapy.inference.renderers import _gojson
from ollamapy.inference.renderers.qwen3coder import IM_END, IM_START, TOOL_INSTRUCTIONS

VISION = "<|vision_start|><|image_pad|><|vision_end|>"
TOOLS_VL = ("# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
            "You are provided with function signatures within <tools></tools> XML tags:\n<tools>")
TOOLS_VL_END = ("\n</tools>\n\nFor each function call, return a json object with function name "
                "and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n"
                "{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call>")


def thinking(think: Think, default: bool) -> bool:
    if think is None:
        return default
    return think is not False and think != ""


def _is_tool_response(text: str) -> bool:
    return text.startswith("<tool_response>") and text.endswith("</tool_response>")


class _Qwen:
    def __init__(self, is_thinking: bool, image_marker: str | None = None) -> None:
        self.is_thinking = is_thinking
        self.image_marker = image_marker

    def content(self, m: Message) -> str:
        marker = self.image_marker if self.image_marker is not None else VISION
        return marker * len(m.images or ()) + m.content

    def last_query(self, messages: Sequence[Message], strip: bool) -> int:
        for i in range(len(messages) - 1, -1, -1):
            m = messages[i]
            text = self.content(m).strip() if strip else self.content(m)
            if m.role == "user" and not _is_tool_response(text):
                return i
        return len(messages) - 1


class Qwen3VLRenderer(_Qwen):
    def render(self, messages: Sequence[Message], tools: Sequence[Tool] | None,
               think: Think) -> str:
        is_thinking = thinking(think, self.is_thinking)
        out: list[str] = []
        first_system = bool(messages) and messages[0].role == "system"
        if tools:
            out.append(IM_START + "system\n")
            if first_system:
                out.append(messages[0].content + "\n\n")
            out.append(TOOLS_VL)
            for t in tools:
                out.append("\n" + _gojson.dumps(_gojson.tool(t), spaces=True))
            out.append(TOOLS_VL_END + IM_END + "\n")
        elif first_system:
            out.append(IM_START + "system\n" + messages[0].content + IM_END + "\n")
        last_query = self.last_query(messages, strip=False)
        for i, m in enumerate(messages):
            content = self.content(m)
            last = i == len(messages) - 1
            prefill = last and m.role == "assistant"
            if m.role == "user" or (m.role == "system" and i != 0):
                out.append(IM_START + m.role + "\n" + content + IM_END + "\n")
            elif m.role == "assistant":
                reasoning = (m.thinking or "") if is_thinking else ""
                if is_thinking and i > last_query and (last or reasoning):
                    out.append(IM_START + "assistant\n<think>\n" + reasoning.strip("\n"))
                    if content:
                        out.append("\n</think>\n\n" + content.lstrip("\n"))
                else:
                    out.append(IM_START + "assistant\n" + content)
                for j, c in enumerate(m.tool_calls or ()):
                    if j > 0 or content:
                        out.append("\n")
                    out.append("<tool_call>\n{\"name\": \"" + c.function.name
                               + "\", \"arguments\": "
                               + _gojson.dumps(c.function.arguments, spaces=True)
                               + "}\n</tool_call>")
                if not prefill:
                    out.append(IM_END + "\n")
            elif m.role == "tool":
                if i == 0 or messages[i - 1].role != "tool":
                    out.append(IM_START + "user")
                out.append("\n<tool_response>\n" + content + "\n</tool_response>")
                if last or messages[i + 1].role != "tool":
                    out.append(IM_END + "\n")
            if last and not prefill:
                out.append(IM_START + "assistant\n" + ("<think>\n" if is_thinking else ""))
        return "".join(out)


def _split_reasoning(content: str, thinking_text: str | None,
                     use_thinking: bool) -> tuple[str, str]:
    if use_thinking and thinking_text:
        return thinking_text.strip(), content
    reasoning = ""
    i = content.find("</think>")
    if i >= 0:
        before = content[:i]
        j = before.rfind("<think>")
        reasoning = before[j + len("<think>"):] if j >= 0 else before
        content = content[i + len("</think>"):].lstrip("\n")
    return reasoning.strip(), content


class Qwen35Renderer(_Qwen):
    def render(self, messages: Sequence[Message], tools: Sequence[Tool] | None,
               think: Think) -> str:
        is_thinking = thinking(think, self.is_thinking)
        out: list[str] = []
        first_system = bool(messages) and messages[0].role == "system"
        if tools:
            out.append(IM_START + "system\n# Tools\n\nYou have access to the following "
                       "functions:\n\n<tools>")
            for t in tools:
                out.append("\n" + _gojson.dumps(_gojson.tool(t), spaces=True))
            out.append("\n</tools>" + TOOL_INSTRUCTIONS)
            if first_system:
                sys_text = self.content(messages[0]).strip()
                if sys_text:
                    out.append("\n\n" + sys_text)
            out.append(IM_END + "\n")
        elif first_system:
            out.append(IM_START + "system\n" + self.content(messages[0]).strip() + IM_END + "\n")
        last_query = self.last_query(messages, strip=True)
        for i, m in enumerate(messages):
            content = self.content(m).strip()
            last = i == len(messages) - 1
            prefill = last and m.role == "assistant"
            if m.role == "user" or (m.role == "system" and i != 0):
                out.append(IM_START + m.role + "\n" + content + IM_END + "\n")
            elif m.role == "assistant":
                block = is_thinking and i > last_query
                reasoning, content = _split_reasoning(content, m.thinking, block)
                if block:
                    out.append(IM_START + "assistant\n<think>\n" + reasoning + "\n</think>\n\n"
                               + content)
                else:
                    out.append(IM_START + "assistant\n" + content)
                for j, c in enumerate(m.tool_calls or ()):
                    if j == 0:
                        if content.strip():
                            out.append("\n\n")
                    else:
                        out.append("\n")
                    out.append(f"<tool_call>\n<function={c.function.name}>\n")
                    for k, v in c.function.arguments.items():
                        out.append(f"<parameter={k}>\n{_gojson.arg_text(v)}\n</parameter>\n")
                    out.append("</function>\n</tool_call>")
                if not prefill:
                    out.append(IM_END + "\n")
            elif m.role == "tool":
                if i == 0 or messages[i - 1].role != "tool":
                    out.append(IM_START + "user")
                out.append("\n<tool_response>\n" + content + "\n</tool_response>")
                if last or messages[i + 1].role != "tool":
                    out.append(IM_END + "\n")
            if last and not prefill:
                out.append(IM_START + "assistant\n")
                out.append("<think>\n" if is_thinking else "<think>\n\n</think>\n\n")
        return "".join(out)
