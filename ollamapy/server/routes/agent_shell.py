"""What the two agent API families (`anthropic.py`, `responses.py`) share around the engine:
a too-long prompt in the API's words, and a whole answer folded from the event stream."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from ollamapy.errors import BadRequest, PromptTooLong, RunnerError
from ollamapy.inference.events import Event, close_stream
from ollamapy.translate.turn import Turn


async def reworded(events: AsyncIterator[Event],
                   too_long: Callable[[PromptTooLong], BadRequest]) -> AsyncIterator[Event]:
    """The engine's stream with a too-long prompt worded in the API's own terms."""
    try:
        async for ev in events:
            yield ev
    except PromptTooLong as e:
        raise too_long(e) from None
    finally:
        await close_stream(events)


async def collect(events: AsyncIterator[Event]) -> Turn:
    """A non-streaming answer: every event folded (upstream is still streamed and closed)."""
    turn = Turn()
    try:
        async for ev in events:
            turn.add(ev)
    finally:
        await close_stream(events)
    if turn.done is None:
        raise RunnerError("no response from llama runner")
    return turn
