"""GLM-4.6 / 4.7 (`glm-4.6`, `glm-4.7`): `<think>…</think>` then content, calls as
`<tool_call>name<arg_key>k</arg_key><arg_value>v</arg_value></tool_call>`."""

from __future__ import annotations

from ollamapy.inference.parsers._bodies import glm_body
from ollamapy.inference.parsers._tagged import Spec, TaggedParser

GLM = Spec(parse_body=glm_body, tool_open="<tool_call>", tool_close="</tool_call>",
           think_open="<think>", think_close="</think>", thinking=True, default_thinking=True)


def glm() -> TaggedParser:
    return TaggedParser(GLM)
