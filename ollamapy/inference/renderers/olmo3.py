"""Olmo 3 / 3.1 instruct (`olmo3`, `olmo3.1`): ChatML with a default system message, tools as a
JSON list in `<functions>`, calls as Python-style `f(a="x")` in `<function_calls>` and tool
results in an `environment` turn."""

from __future__ import annotations

from collections.abc import Sequence

from ollamapy.api.inference import Message, Think, Tool
from ollamapy.inference.renderers import _gojson

OLMO3_SYSTEM = "You are a helpful function-calling AI assistant. "
OLMO31_SYSTEM = ("You are Olmo, a helpful AI assistant built by Ai2. Your date cutoff is December "
                 "2024, and your model weights are available at https://huggingface.co/allenai. ")
NO_FUNCTIONS = "You do not currently have access to any functions. "
WITH_FUNCTIONS = ("You are provided with function signatures within <functions></functions> XML "
                  "tags. You may call one or more functions to assist with the user query. "
                  "Output any function calls within <function_calls></function_calls> XML tags. "
                  "Do not make assumptions about what values to plug into functions.")


class Olmo3Renderer:
    def __init__(self, extended_system: bool = False) -> None:
        self.extended_system = extended_system

    def render(self, messages: Sequence[Message], tools: Sequence[Tool] | None,
               think: Think) -> str:
        system = next((m for m in messages if m.role == "system"), None)
        msgs = [m for m in messages if m.role != "system"]
        funcs = ("<functions>" + _gojson.dumps([_gojson.tool(t) for t in tools], spaces=True)
                 + "</functions>") if tools else ""
        out = ["<|im_start|>system\n"]
        if system is not None:
            out.append(system.content + funcs)
        else:
            out.append(OLMO31_SYSTEM if self.extended_system else OLMO3_SYSTEM)
            out.append(WITH_FUNCTIONS + funcs if tools
                       else NO_FUNCTIONS + "<functions></functions>")
        out.append("<|im_end|>\n")
        for i, m in enumerate(msgs):
            last = i == len(msgs) - 1
            if m.role == "user":
                out.append("<|im_start|>user\n" + m.content + "<|im_end|>\n")
            elif m.role == "assistant":
                out.append("<|im_start|>assistant\n" + m.content)
                if m.tool_calls:
                    calls = []
                    for c in m.tool_calls:
                        args = ", ".join(f"{k}={_gojson.dumps(c.function.arguments[k])}"
                                         for k in sorted(c.function.arguments))
                        calls.append(f"{c.function.name}({args})")
                    out.append("<function_calls>" + "\n".join(calls) + "</function_calls>")
                if not last or m.tool_calls:
                    out.append("<|im_end|>\n")
            elif m.role == "tool":
                out.append("<|im_start|>environment\n" + m.content + "<|im_end|>\n")
        tail = msgs[-1] if msgs else None
        if not (tail is not None and tail.role == "assistant" and not tail.tool_calls
                and tail.content):
            out.append("<|im_start|>assistant\n")
        return "".join(out)


THINK_FUNCTIONS_SUFFIX = " " + NO_FUNCTIONS.strip() + " <functions></functions>"
THINK_32B_SYSTEM = "You are a helpful AI assistant."
THINK_31_SYSTEM = ("You are Olmo, a helpful AI assistant built by Ai2. Your date cutoff is "
                   "December 2024, and your model weights are available at "
                   "https://huggingface.co/allenai.")


class Olmo3ThinkRenderer:
    """Olmo 3 Think (`olmo3-think`, `olmo3-32b-think`): no tools (calls and tool turns are
    dropped), the prompt always ends in an open `<think>`."""

    def __init__(self, is_32b: bool = False) -> None:
        self.is_32b = is_32b

    def render(self, messages: Sequence[Message], tools: Sequence[Tool] | None,
               think: Think) -> str:
        system = next((m for m in messages if m.role == "system"), None)
        out = ["<|im_start|>system\n"]
        if system is not None:
            out.append(system.content + THINK_FUNCTIONS_SUFFIX)
        else:
            out.append(THINK_32B_SYSTEM if self.is_32b else THINK_31_SYSTEM)
        out.append("<|im_end|>\n")
        for m in messages:
            if m.role in ("user", "assistant"):
                out.append(f"<|im_start|>{m.role}\n{m.content}<|im_end|>\n")
        out.append("<|im_start|>assistant\n<think>")
        return "".join(out)
