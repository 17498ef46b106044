"""A forced tool call (Anthropic `tool_choice` `any` / `tool`, Responses `required` / a named
function): the answer is constrained to one call of the allowed tools and turned back into a
tool-call event.

Ollama ignores these choices (its Responses code: "`required` cannot be generally supported"),
so a model may answer in text where the client demanded a call. Here the request's `format` is a
JSON schema admitting exactly `{"name": <one tool>, "arguments": <its input schema>}`, which
llama-server compiles to a grammar; the engine lets a thinking model think first, then
constrains the answer. The constrained answer is plain JSON text (a template's tool tag such as
`<tool_call>` is not part of it), so `forced_call` buffers the text and, at the end, emits it as
the tool-call event the client asked for. A call the engine's own parser already found (a
template whose tool format is bare JSON) passes through unchanged.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence

from ollamapy.api.inference import Tool
from ollamapy.inference.events import Done, Event, TextDelta, ToolCallEvent, close_stream
from ollamapy.inference.jsontypes import JsonObject
from ollamapy.template.tools import call_id


def call_schema(tools: Sequence[Tool]) -> JsonObject:
    """The JSON schema of one call to one of `tools` (the grammar the answer must follow)."""
    options: list[JsonObject] = []
    for t in tools:
        args = {k: v for k, v in t.function.parameters.items() if k != "$schema"}
        args = args or {"type": "object"}
        options.append({"type": "object",
                        "properties": {"name": {"const": t.function.name}, "arguments": args},
                        "required": ["name", "arguments"]})
    return options[0] if len(options) == 1 else {"anyOf": options}


def parse_call(text: str, names: Sequence[str]) -> ToolCallEvent | None:
    """The constrained answer -> a tool call (None when it is not one of `names`)."""
    try:
        obj = json.loads(text)
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return None
    name, args = obj.get("name"), obj.get("arguments", {})
    if not isinstance(name, str) or name not in names or not isinstance(args, dict):
        return None
    return ToolCallEvent(name=name, arguments=args, id=call_id())


async def forced_call(events: AsyncIterator[Event], names: Sequence[str]
                      ) -> AsyncIterator[Event]:
    """The engine's events with the constrained JSON answer turned into a ToolCallEvent before
    Done. Text that is not a call (e.g. cut by max_tokens) is passed on as text at the end."""
    held: list[str] = []
    called = False
    try:
        async for ev in events:
            if isinstance(ev, TextDelta) and not called:
                held.append(ev.text)
                continue
            if isinstance(ev, ToolCallEvent):
                called = True
            elif isinstance(ev, Done) and not called and held:
                text = "".join(held)
                call = parse_call(text, names)
                if call is not None:
                    yield call
                elif text.strip():
                    yield TextDelta(text)
            yield ev
    finally:
        await close_stream(events)
