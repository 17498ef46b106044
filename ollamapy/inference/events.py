"""The typed events the engine streams; every API family encodes these and nothing else.

Errors are not events: the stream raises an `OllamaError` subclass (before or after the first
event), and the family's encoder turns it into its own error shape (a final NDJSON
`{"error": ...}` line, an SSE error event, or a status code when nothing was sent yet).
Slotted dataclasses: the relay handles >150k of these a second on one core.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal

from ollamapy.inference.jsontypes import JsonObject

DoneReason = Literal["stop", "length", "load", "unload"]


@dataclass(slots=True, frozen=True)
class TokenLogprob:
    token: str
    logprob: float
    bytes: list[int]
    top: tuple[TokenLogprob, ...] = ()


@dataclass(slots=True)
class TextDelta:
    """Answer text as it streams (tool-call markup and thinking already taken out)."""

    text: str
    tokens: list[int] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)


@dataclass(slots=True)
class ThinkingDelta:
    text: str


@dataclass(slots=True)
class ToolCallEvent:
    """One complete tool call (parsed arguments); `index` counts calls within the turn."""

    name: str
    arguments: JsonObject
    id: str
    index: int = 0


@dataclass(slots=True)
class Flush:
    """The events before it arrived in one upstream read: an encoder may write them in one
    go. Never delays anything; encoders that do not batch ignore it."""


FLUSH = Flush()


@dataclass(slots=True)
class Done:
    """The last event of every stream that did not raise. Durations are nanoseconds (Ollama's
    metrics); counts are tokens. `stop_sequence` is the stop string that ended it, if any."""

    done_reason: DoneReason = "stop"
    stop_sequence: str | None = None
    prompt_eval_count: int = 0
    cached_prompt_tokens: int = 0
    eval_count: int = 0
    total_duration: int = 0
    load_duration: int = 0
    prompt_eval_duration: int = 0
    eval_duration: int = 0
    context: list[int] | None = None  # generate's prompt+answer token ids, when asked for
    debug_rendered: str | None = None  # `_debug_render_only`: the prompt, nothing generated
    debug_image_count: int = 0


Event = TextDelta | ThinkingDelta | ToolCallEvent | Flush | Done


async def close_stream(events: AsyncIterator[Event]) -> None:
    """Close an event stream now (an async generator: its upstream request with it); anything
    else is left alone. Every consumer that stops early calls this."""
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        await aclose()
