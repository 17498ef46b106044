"""Llama 3.x JSON tool calls (`llama3-json`): an answer that opens with `{` or `<|python_tag|>`
is a call (`{"name": ..., "parameters": {...}}`, several separated by `;`); anything else streams
as content. A call is only known complete at the end of the output."""

from __future__ import annotations

from collections.abc import Sequence

from ollamapy.api.inference import Message, Think, Tool
from ollamapy.inference.events import TextDelta, ToolCallEvent
from ollamapy.inference.family import ParsedEvent
from ollamapy.inference.parsers._bodies import json_list_body
from ollamapy.inference.parsers._tagged import BadCall, Schemas, schemas
from ollamapy.template.tools import call_id

PYTHON_TAG = "<|python_tag|>"


class Llama3JsonParser:
    def __init__(self) -> None:
        self._buf = ""
        self._mode: str | None = None  # None: undecided, "text", "call"
        self._schemas: Schemas = {}

    def has_tool_support(self) -> bool:
        return True

    def has_thinking_support(self) -> bool:
        return False

    def init(self, tools: Sequence[Tool] | None, last_message: Message | None,
             think: Think) -> None:
        self._schemas, self._buf = schemas(tools), ""
        self._mode = "text" if not tools else None

    def feed(self, text: str) -> list[ParsedEvent]:
        if self._mode == "text":
            return [TextDelta(text)] if text else []
        self._buf += text
        if self._mode == "call":
            return []
        head = self._buf.lstrip()
        if not head or PYTHON_TAG.startswith(head):
            return []
        if head.startswith("{") or head.startswith(PYTHON_TAG):
            self._mode = "call"
            return []
        self._mode, out, self._buf = "text", self._buf, ""
        return [TextDelta(out)]

    def finish(self) -> list[ParsedEvent]:
        buf, self._buf = self._buf, ""
        if self._mode != "call":
            return [TextDelta(buf)] if buf else []
        body = buf.strip().removeprefix(PYTHON_TAG)
        try:
            calls = json_list_body(body, self._schemas)
        except (BadCall, ValueError):
            return [TextDelta(buf)]
        return [ToolCallEvent(name=n, arguments=a, id=call_id(), index=i)
                for i, (n, a) in enumerate(calls)]


def llama3_json() -> Llama3JsonParser:
    return Llama3JsonParser()
