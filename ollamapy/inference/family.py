"""The joints for per-family renderers and parsers (Ollama's `RENDERER x` / `PARSER y`).

A renderer turns a conversation into the exact prompt text the model family expects; a parser
turns the model's streamed raw output into typed events. Both are looked up by the names a
Modelfile or a pulled model's config gives (`renderers.get(name)`, `parsers.get(name)`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ollamapy.api.inference import Message, Think, Tool
from ollamapy.inference.events import TextDelta, ThinkingDelta, ToolCallEvent

ParsedEvent = TextDelta | ThinkingDelta | ToolCallEvent


class Renderer(Protocol):
    def render(self, messages: Sequence[Message], tools: Sequence[Tool] | None,
               think: Think) -> str: ...


class Parser(Protocol):
    """Streaming-safe: a tag or a call split across `feed` calls comes out whole, once."""

    def has_tool_support(self) -> bool: ...

    def has_thinking_support(self) -> bool: ...

    def init(self, tools: Sequence[Tool] | None, last_message: Message | None,
             think: Think) -> None:
        """Before the first feed; `last_message` is an assistant prefill, if any."""

    def feed(self, text: str) -> list[ParsedEvent]: ...

    def finish(self) -> list[ParsedEvent]:
        """End of output: whatever was held back, as content (or a final call)."""
