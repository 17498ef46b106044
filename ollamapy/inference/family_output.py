"""A per-family parser (inference/parsers) behind the engine's `OutputParser` interface: the
relay loop feeds text and gets (thinking, content, tool calls) back, whichever parser runs.

An optional generic thinking split (a Go template's tags) runs first; the family parser then
sees only the content (used for a Go template's tool format, which has no thinking of its own).
A parser without tool support gets the generic tool parser after it (Ollama's tools.Parser).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ollamapy.inference.events import TextDelta, ThinkingDelta, ToolCallEvent
from ollamapy.inference.family import ParsedEvent, Parser
from ollamapy.inference.output import OutputParser
from ollamapy.template.tools import ToolCall


def _split(events: Iterable[ParsedEvent]) -> tuple[str, str, list[ToolCall]]:
    thinking: list[str] = []
    content: list[str] = []
    calls: list[ToolCall] = []
    for e in events:
        if isinstance(e, ThinkingDelta):
            thinking.append(e.text)
        elif isinstance(e, TextDelta):
            content.append(e.text)
        elif isinstance(e, ToolCallEvent):
            calls.append(ToolCall(e.name, e.arguments, e.index, e.id))
    return "".join(thinking), "".join(content), calls


@dataclass(slots=True)
class FamilyOutput(OutputParser):
    family: Parser | None = None

    @property
    def plain(self) -> bool:
        return False

    def feed(self, text: str) -> tuple[str, str, list[ToolCall]]:
        thinking = ""
        if self.thinking is not None:
            thinking, text = self.thinking.add(text)
        if self.family is None or not text:
            return thinking, text, []
        th, content, calls = _split(self.family.feed(text))
        if self.tools is not None and content:
            content, more = self.tools.add(content)
            calls += more
        return thinking + th, content, calls

    def finish(self) -> tuple[str, str, list[ToolCall]]:
        thinking = text = ""
        if self.thinking is not None:
            thinking, text = self.thinking.finish()
        if self.family is None:
            return thinking, text, []
        th, content, calls = _split([*self.family.feed(text), *self.family.finish()]
                                    if text else self.family.finish())
        if self.tools is not None:
            if content:
                content, more = self.tools.add(content)
                calls += more
            content += self.tools.finish()
        return thinking + th, content, calls
