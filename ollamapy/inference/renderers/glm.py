"""GLM-4.7 (`glm-4.7`): `[gMASK]<sop>`, `<|user|>`/`<|assistant|>`/`<|observation|>` turns,
thinking on unless `think` is false and kept from earlier turns, calls as
`<tool_call>name<arg_key>k</arg_key><arg_value>v</arg_value></tool_call>`."""

from __future__ import annotations

from collections.abc import Sequence

from ollamapy.api.inference import Message, Think, Tool
from ollamapy.inference.renderers import _gojson
from ollamapy.inference.renderers.qwen3vl import thinking

TOOLS_HEAD = ("<|system|>\n# Tools\n\nYou may call one or more functions to assist with the "
              "user query.\n\nYou are provided with function signatures within <tools></tools> "
              "XML tags:\n<tools>\n")
TOOLS_TAIL = ("</tools>\n\nFor each function call, output the function name and arguments "
              "within the following XML format:\n<tool_call>{function-name}<arg_key>{arg-key-1}"
              "</arg_key><arg_value>{arg-value-1}</arg_value><arg_key>{arg-key-2}</arg_key>"
              "<arg_value>{arg-value-2}</arg_value>...</tool_call>")


class GLM47Renderer:
    def render(self, messages: Sequence[Message], tools: Sequence[Tool] | None,
               think: Think) -> str:
        out = ["[gMASK]<sop>"]
        if tools:
            out.append(TOOLS_HEAD)
            for t in tools:
                out.append(_gojson.dumps(_gojson.tool(t), spaces=True) + "\n")
            out.append(TOOLS_TAIL)
        for i, m in enumerate(messages):
            if m.role == "user":
                out.append("<|user|>" + m.content)
            elif m.role == "assistant":
                out.append("<|assistant|>" + (f"<think>{m.thinking}</think>" if m.thinking
                                              else "</think>") + m.content)
                for c in m.tool_calls or ():
                    out.append("<tool_call>" + c.function.name)
                    for k, v in c.function.arguments.items():
                        val = v if isinstance(v, str) else _gojson.dumps(v)
                        out.append(f"<arg_key>{k}</arg_key><arg_value>{val}</arg_value>")
                    out.append("</tool_call>")
            elif m.role == "tool":
                if i == 0 or messages[i - 1].role != "tool":
                    out.append("<|observation|>")
                out.append("<tool_response>" + m.content + "</tool_response>")
            elif m.role == "system":
                out.append("<|system|>" + m.content)
        out.append("<|assistant|>" + ("<think>" if thinking(think, True) else "</think>"))
        return "".join(out)
