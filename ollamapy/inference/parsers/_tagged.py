"""The streaming machine most families share: thinking, content and tool-call sections marked by
tags, with whitespace trimmed around the tags the way Ollama's parsers trim it.

Split-invariant by construction: text is emitted only once no tag could still be forming at the
end of the buffer (the longest suffix that is a tag prefix is held back, plus the whitespace just
before it, which a following tag would trim). A family is a `Spec`: its tags, how a call body ends
and how a body becomes calls.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ollamapy.api.inference import Message, Think, Tool
from ollamapy.inference.events import TextDelta, ThinkingDelta, ToolCallEvent
from ollamapy.inference.family import ParsedEvent
from ollamapy.inference.jsontypes import JsonObject
from ollamapy.template.tools import call_id

Call = tuple[str, JsonObject]
Schemas = dict[str, JsonObject]
BodyParser = Callable[[str, Schemas], list[Call]]


class BadCall(ValueError):
    """A call body that does not parse; its text goes out as content instead."""


@dataclass(frozen=True)
class Spec:
    parse_body: BodyParser
    tool_open: str | None = None
    tool_close: str | None = None  # None: the body is [json_after] + one JSON value
    json_after: str | None = None  # "": the JSON value starts the body; "[ARGS]": follows it
    think_open: str | None = None  # optional opener eaten at the start of thinking
    think_close: str | None = None
    thinking: bool = False  # HasThinkingSupport
    default_thinking: bool = False  # think unset -> thinking on?
    think_in_content: bool = False  # a `think_open` in content switches to thinking
    tools: bool = True
    thinking_first: bool = True  # thinking on: the output starts inside the thinking block
    think_prefix: str = ""  # a channel name right after `think_open` (Gemma 4's "thought\n")
    drop_thinking_off: bool = False  # thinking text is discarded unless thinking was asked for
    after_call_noise: tuple[str, ...] = ()  # stray tags dropped right after a call


THINK, CONTENT, TOOL = 0, 1, 2
NOT_JSON = -2


class JsonEnd:
    """Where the first JSON object/array in a growing buffer ends, scanning each character
    once however the buffer arrives (string- and escape-aware bracket depth)."""

    def __init__(self) -> None:
        self.pos = -1  # -1: the value has not started yet
        self.depth = 0
        self.in_str = self.esc = False

    def end(self, buf: str, start: int) -> int:
        if self.pos < 0:
            self.pos = start
        for i in range(self.pos, len(buf)):
            c = buf[i]
            if self.in_str:
                if self.esc:
                    self.esc = False
                elif c == "\\":
                    self.esc = True
                elif c == '"':
                    self.in_str = False
            elif c == '"':
                self.in_str = True
            elif c in "{[":
                self.depth += 1
            elif c in "}]":
                self.depth -= 1
                if self.depth == 0:
                    self.pos = i + 1
                    return i + 1
        self.pos = len(buf)
        return -1


def overlap(s: str, tag: str) -> int:
    """Length of the longest suffix of s that is a proper prefix of tag."""
    for n in range(min(len(tag) - 1, len(s)), 0, -1):
        if s.endswith(tag[:n]):
            return n
    return 0


def thinking_on(think: Think, default: bool) -> bool:
    if think is None:
        return default
    if isinstance(think, str):
        return True
    return bool(think)


def schemas(tools: Sequence[Tool] | None) -> Schemas:
    return {t.function.name: t.function.parameters for t in tools or ()}


def json_args(v: Any) -> JsonObject:
    if isinstance(v, str):
        try:
            v = json.loads(v)
        except ValueError:
            raise BadCall("arguments are not JSON") from None
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise BadCall("arguments are not an object")
    return v


class TaggedParser:
    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self._buf = ""
        self._state = CONTENT
        self._strip = False
        self._maybe_open = False
        self._schemas: Schemas = {}
        self._index = 0
        self._open_tag = ""
        self._seen = 0  # how much of a call body was already searched for its close tag
        self._json = JsonEnd()
        self._thinking_on = False
        self._prefix = ""
        self._noise = False

    def has_tool_support(self) -> bool:
        return self.spec.tools

    def has_thinking_support(self) -> bool:
        return self.spec.thinking

    def init(self, tools: Sequence[Tool] | None, last_message: Message | None,
             think: Think) -> None:
        self._schemas = schemas(tools)
        self._thinking_on = self.spec.thinking and thinking_on(think, self.spec.default_thinking)
        self._prefix, self._noise = "", False
        self._buf, self._index, self._strip, self._seen = "", 0, False, 0
        prefill_content = (last_message is not None and last_message.role == "assistant"
                           and bool(last_message.content))
        if self._thinking_on and self.spec.thinking_first and not prefill_content:
            self._state = THINK
            self._maybe_open = self.spec.think_open is not None
        else:
            self._state = CONTENT
            self._maybe_open = False

    def feed(self, text: str) -> list[ParsedEvent]:
        self._buf += text
        out: list[ParsedEvent] = []
        while self._step(out, done=False):
            pass
        return out

    def finish(self) -> list[ParsedEvent]:
        out: list[ParsedEvent] = []
        while self._step(out, done=True):
            pass
        rest, self._buf = self._buf, ""
        if self._state == TOOL and rest.strip():
            self._finish_call(rest, out)
        elif rest.strip():
            self._emit(rest.rstrip(), out)
        return out

    # -- the machine ---------------------------------------------------------------------------

    def _terms(self) -> list[str]:
        s = self.spec
        if self._state == THINK:
            return [t for t in (s.think_close, s.tool_open) if t]
        terms = [s.tool_open] if s.tool_open and self.spec.tools else []
        if s.think_in_content and s.think_open:
            terms.append(s.think_open)
        return terms

    def _emit(self, text: str, out: list[ParsedEvent]) -> None:
        if not text or (self._state == THINK and self.spec.drop_thinking_off
                        and not self._thinking_on):
            return
        out.append(ThinkingDelta(text) if self._state == THINK else TextDelta(text))

    def _step(self, out: list[ParsedEvent], done: bool) -> bool:
        if self._strip:
            self._buf = self._buf.lstrip()
            if not self._buf:
                return False
            self._strip = False
        if self._state == TOOL:
            return self._step_tool(out)
        if self._prefix:
            if self._buf.startswith(self._prefix):
                self._buf = self._buf[len(self._prefix):]
            elif self._prefix.startswith(self._buf) and not done:
                return False
            self._prefix = ""
        if self._noise:
            self._buf = self._buf.lstrip()
            for tag in self.spec.after_call_noise:
                if self._buf.startswith(tag):
                    self._buf = self._buf[len(tag):]
                    return True
            if not done and (not self._buf or any(t.startswith(self._buf)
                                                  for t in self.spec.after_call_noise)):
                return False
            self._noise = False
        if self._maybe_open:
            opener = self.spec.think_open or ""
            if self._buf.lstrip().startswith(opener):
                self._buf = self._buf.lstrip()[len(opener):]
                self._maybe_open, self._prefix = False, self.spec.think_prefix
                self._strip = not self._prefix
                return True
            if opener.startswith(self._buf.lstrip()) and not done:
                return False
            self._maybe_open = False
        terms = self._terms()
        hits = [(self._buf.find(t), t) for t in terms]
        hits = [(i, t) for i, t in hits if i >= 0]
        if hits:
            i, tag = min(hits)
            self._emit(self._buf[:i].rstrip(), out)
            self._buf = self._buf[i + len(tag):]
            self._strip = True
            if tag == self.spec.tool_open:
                self._state, self._open_tag, self._seen = TOOL, tag, 0
                self._json = JsonEnd()
                self._strip = self.spec.tool_close is not None
            elif tag == self.spec.think_close:
                self._state = CONTENT
            else:
                self._state, self._prefix = THINK, self.spec.think_prefix
                self._strip = not self._prefix
            return True
        if done:
            return False
        hold = max((overlap(self._buf, t) for t in terms), default=0)
        head = self._buf[:len(self._buf) - hold]
        keep = len(head) - len(head.rstrip())
        cut = len(head) - keep
        self._emit(self._buf[:cut], out)
        self._buf = self._buf[cut:]
        return False

    def _step_tool(self, out: list[ParsedEvent]) -> bool:
        close = self.spec.tool_close
        if close is not None:
            i = self._buf.find(close, max(0, self._seen - len(close)))
            if i < 0:
                self._seen = len(self._buf)
                return False
            self._seen = 0
            body, self._buf = self._buf[:i], self._buf[i + len(close):]
        else:
            end = self._json_body_end()
            if end == NOT_JSON:
                # the tag was not a call after all: it and what follows are content
                out.append(TextDelta(self._open_tag))
                self._state = CONTENT
                return True
            if end < 0:
                return False
            body, self._buf = self._buf[:end], self._buf[end:]
        self._finish_call(body, out, closed=True)
        self._state, self._strip = CONTENT, True
        self._noise = bool(self.spec.after_call_noise)
        return True

    def _json_body_end(self) -> int:
        marker = self.spec.json_after or ""
        if self._json.pos < 0:
            i = self._buf.find(marker) if marker else 0
            if i < 0:
                return -1
            j = i + len(marker)
            while j < len(self._buf) and self._buf[j].isspace():
                j += 1
            if j >= len(self._buf):
                return -1
            if self._buf[j] not in "[{":
                # not JSON: without a marker the body is plain text, known whole at once;
                # after a marker the call can only end with the output
                return -1 if marker else NOT_JSON
            return self._json.end(self._buf, j)
        return self._json.end(self._buf, self._json.pos)

    def _finish_call(self, body: str, out: list[ParsedEvent], closed: bool = False) -> None:
        try:
            calls = self.spec.parse_body(body.strip(), self._schemas)
        except (BadCall, ValueError, TypeError):
            raw = self._open_tag + body + ((self.spec.tool_close or "") if closed else "")
            out.append(TextDelta(raw))
            return
        for name, args in calls:
            out.append(ToolCallEvent(name=name, arguments=args, id=call_id(), index=self._index))
            self._index += 1
