"""The model's streamed text -> typed events: thinking split, then tool-call extraction (the
parsers live in template/thinking.py and template/tools.py), and llama-server's per-token
probabilities -> `TokenLogprob`. Pure; the engine feeds it one upstream event at a time."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ollamapy.inference.events import TextDelta, ThinkingDelta, TokenLogprob, ToolCallEvent
from ollamapy.inference.jsontypes import JsonObject
from ollamapy.template.thinking import ThinkingParser
from ollamapy.template.tools import ToolCall, ToolParser

StepEvent = TextDelta | ThinkingDelta | ToolCallEvent
NO_LOGPROBS: list[TokenLogprob] = []


def _prob(p: JsonObject, top: tuple[TokenLogprob, ...] = ()) -> TokenLogprob:
    return TokenLogprob(str(p.get("token", "")), float(p.get("logprob", 0.0)),
                        list(p.get("bytes") or []), top)


def logprobs(probs: Any, top: int) -> list[TokenLogprob]:
    """llama-server completion_probabilities -> TokenLogprob (the `top` most likely
    alternatives each, when top > 0)."""
    out: list[TokenLogprob] = []
    for p in probs or ():
        alts = tuple(_prob(t) for t in (p.get("top_logprobs") or [])[:top]) if top > 0 else ()
        out.append(_prob(p, alts))
    return out


@dataclass(slots=True)
class OutputParser:
    """Thinking split, then tool-call extraction, applied to the model's text as it streams."""

    thinking: ThinkingParser | None = None
    tools: ToolParser | None = None

    @property
    def plain(self) -> bool:
        return self.thinking is None and self.tools is None

    def feed(self, text: str) -> tuple[str, str, list[ToolCall]]:
        """-> (thinking, content, tool calls) of this piece."""
        thinking = ""
        calls: list[ToolCall] = []
        if self.thinking is not None:
            thinking, text = self.thinking.add(text)
        if self.tools is not None and text:
            text, calls = self.tools.add(text)
        return thinking, text, calls

    def finish(self) -> tuple[str, str, list[ToolCall]]:
        thinking = text = ""
        calls: list[ToolCall] = []
        if self.thinking is not None:
            thinking, text = self.thinking.finish()
        if self.tools is not None:
            if text:
                text, calls = self.tools.add(text)
            text += self.tools.finish()
        return thinking, text, calls


def step_events(thinking: str, content: str, calls: Sequence[ToolCall], tokens: list[int],
                probs: list[TokenLogprob]) -> list[StepEvent]:
    """What one upstream event contributes, in order: thinking, text, tool calls. A text delta
    also carries the token ids and log probabilities of the event (an empty one only when
    there are log probabilities to pass on)."""
    out: list[StepEvent] = []
    if thinking:
        out.append(ThinkingDelta(thinking))
    if content or probs:
        out.append(TextDelta(content, tokens, probs))
    for c in calls:
        out.append(ToolCallEvent(c.name, c.arguments, c.id, c.index))
    return out
