"""Output parsers by the name a Modelfile's `PARSER` (or a pulled config's `parser`) gives,
plus the tool formats of Go-template families (`hermes`, `llama3-json`, `mistral`,
`deepseek-tools`) for the engine to pick by name.

`get(name)` returns a fresh parser (they hold per-stream state) or None for an unknown name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ollamapy.api.inference import Message, Think, Tool
from ollamapy.inference.events import TextDelta
from ollamapy.inference.family import ParsedEvent, Parser
from ollamapy.inference.parsers import (
    deepseek,
    gemma4,
    glm,
    harmony,
    llama3,
    mistral,
    pythonic,
    qwen3,
)
from ollamapy.inference.parsers import qwen3coder as qc
from ollamapy.inference.parsers._bodies import hermes_body
from ollamapy.inference.parsers._tagged import Spec, TaggedParser


def _spec(spec: Spec) -> Callable[[], Parser]:
    return lambda: TaggedParser(spec)


QWEN3 = Spec(parse_body=hermes_body, tool_open="<tool_call>", tool_close="</tool_call>")


class Passthrough:
    """`passthrough`: the text as it came."""

    def has_tool_support(self) -> bool:
        return False

    def has_thinking_support(self) -> bool:
        return False

    def init(self, tools: Sequence[Tool] | None, last_message: Message | None,
             think: Think) -> None:
        return None

    def feed(self, text: str) -> list[ParsedEvent]:
        return [TextDelta(text)] if text else []

    def finish(self) -> list[ParsedEvent]:
        return []


_REGISTRY: dict[str, Callable[[], Parser]] = {
    "passthrough": Passthrough,
    "harmony": harmony.harmony,
    "qwen3": _spec(QWEN3),
    "qwen3-thinking": qwen3.qwen3_thinking,
    "qwen3-vl-instruct": _spec(QWEN3),
    "qwen3-vl-thinking": qwen3.qwen3_thinking,
    "qwen3-coder": qc.qwen3_coder,
    "qwen3.5": qc.thinking_xml,
    "ornith": qc.thinking_xml,
    "nemotron-3-nano": qc.thinking_xml,
    "nemotron-3.5-nano": qc.thinking_xml,
    "deepseek3": deepseek.deepseek3,
    "glm-4.6": glm.glm,
    "glm-4.7": glm.glm,
    "ministral": mistral.ministral,
    "lfm2": pythonic.lfm2,
    "lfm2-thinking": pythonic.lfm2_thinking,
    "olmo3": pythonic.olmo3,
    "olmo3-think": pythonic.olmo3_think,
    "gemma4": gemma4.gemma4,
    "gemma4-no-thinking": gemma4.gemma4_no_thinking,
    # tool formats of Go-template families (not Ollama PARSER names)
    "hermes": qwen3.hermes,
    "llama3-json": llama3.llama3_json,
    "mistral": mistral.mistral,
    "deepseek-tools": deepseek.deepseek_tools,
}


_BY_TOOL_TAG = {
    "<tool_call>": "hermes",
    "[TOOL_CALLS]": "mistral",
    "<|python_tag|>": "llama3-json",
    "{": "llama3-json",
    deepseek.CALLS_BEGIN: "deepseek-tools",
}


def for_tool_tag(tag: str) -> str | None:
    """The parser name for the tool-call start tag a Go template teaches
    (`ollamapy.template.tools.tool_tag`), or None when none of these formats fits."""
    return _BY_TOOL_TAG.get(tag.strip())


def get(name: str) -> Parser | None:
    make = _REGISTRY.get(name)
    return make() if make is not None else None


def names() -> list[str]:
    return sorted(_REGISTRY)
