"""gpt-oss's harmony format (`harmony`): `<|start|>role<|channel|>ch to=recipient<|message|>…
<|end|>`. `analysis` is thinking, `final` (and recipient-less `commentary`) is content, a message
with a recipient is a tool call whose JSON body is parsed when the message ends.

Tool names are turned into TypeScript-style identifiers for the prompt (`FunctionNames`); the
parser maps them back. The output starts inside an assistant message the prompt opened.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from ollamapy.api.inference import Message, Think, Tool
from ollamapy.inference.events import TextDelta, ThinkingDelta, ToolCallEvent
from ollamapy.inference.family import ParsedEvent
from ollamapy.inference.parsers._tagged import BadCall, json_args, overlap
from ollamapy.template.tools import call_id

START, MESSAGE, CHANNEL, CONSTRAIN = "<|start|>", "<|message|>", "<|channel|>", "<|constrain|>"
ENDS = ("<|end|>", "<|call|>", "<|return|>")
BUILTINS = frozenset({"browser.open", "browser.search", "browser.find", "python"})


class FunctionNames:
    """User tool name <-> harmony identifier (letters, digits, `_`, `$`; duplicates get _2…)."""

    def __init__(self) -> None:
        self.to_harmony: dict[str, str] = {}
        self.to_user: dict[str, str] = {}

    @staticmethod
    def _valid(name: str) -> str:
        out = "".join("_" if c in " -." else c for c in name
                      if c in " -._$" or c.isalpha() or c.isdigit())
        if not out:
            return "unnamed"
        return "_" + out if out[0].isdigit() else out

    def add(self, user: str) -> str:
        if user in BUILTINS:
            cand = user
        else:
            base = cand = self._valid(user)
            n = 2
            while cand in self.to_user:
                cand = f"{base}_{n}"
                n += 1
        self.to_harmony[user] = cand
        self.to_user[cand] = user
        return cand

    def user(self, harmony: str) -> str:
        return self.to_user.get(harmony, harmony)


def parse_header(raw: str) -> tuple[str, str, str]:
    """(role, channel, recipient) of a header such as `assistant<|channel|>commentary
    to=functions.f <|constrain|>json`."""
    raw = raw.replace(CONSTRAIN, " " + CONSTRAIN, 1).strip()
    channel = ""
    i = raw.find(CHANNEL)
    if i >= 0:
        after = raw[i + len(CHANNEL):]
        m = re.match(r"\S*", after)
        channel = m.group(0) if m else ""
        raw = (raw[:i] + after[len(channel):]).strip()
    tokens = raw.split()
    if not tokens:
        return "", channel, ""
    role, rest = tokens[0], tokens[1:]
    recipient = ""
    if role.startswith("to="):
        role, recipient = "tool", role[3:]
    elif rest and rest[0].startswith("to="):
        recipient = rest[0][3:]
    return role, channel, recipient


class HarmonyParser:
    def __init__(self) -> None:
        self.names = FunctionNames()
        self._buf = ""
        self._state = "start"  # start | header | body
        self._kind = "content"  # content | thinking | tool
        self._recipient = ""
        self._tool_body = ""
        self._index = 0

    def has_tool_support(self) -> bool:
        return True

    def has_thinking_support(self) -> bool:
        return True

    def init(self, tools: Sequence[Tool] | None, last_message: Message | None,
             think: Think) -> None:
        self._buf, self._index = START + "assistant", 0
        if last_message is not None and last_message.role == "assistant":
            if last_message.content:
                self._buf = START + "assistant" + CHANNEL + "final" + MESSAGE
            elif last_message.thinking:
                self._buf = START + "assistant" + CHANNEL + "analysis" + MESSAGE
        self._state = "start"
        for t in tools or ():
            self.names.add(t.function.name)

    def prompt_tools(self, tools: Sequence[Tool] | None) -> list[Tool]:
        """The tools with the identifiers the prompt must use (call after `init`)."""
        return [t.model_copy(update={"function": t.function.model_copy(
            update={"name": self.names.to_harmony.get(t.function.name, t.function.name)})})
            for t in tools or ()]

    def feed(self, text: str) -> list[ParsedEvent]:
        self._buf += text
        out: list[ParsedEvent] = []
        while self._step(out):
            pass
        return out

    def finish(self) -> list[ParsedEvent]:
        out: list[ParsedEvent] = []
        if self._state == "body":
            self._emit(self._buf, out)
            self._buf = ""
            self._end_message(out)
        self._buf = ""
        return out

    def _step(self, out: list[ParsedEvent]) -> bool:
        if self._state == "start":
            i = self._buf.find(START)
            if i < 0:
                return False
            self._buf, self._state = self._buf[i + len(START):], "header"
            return True
        if self._state == "header":
            i = self._buf.find(MESSAGE)
            if i < 0:
                return False
            _, channel, recipient = parse_header(self._buf[:i])
            self._buf, self._state = self._buf[i + len(MESSAGE):], "body"
            self._recipient = recipient if channel in ("analysis", "commentary") else ""
            self._kind = ("tool" if self._recipient else
                          "thinking" if channel == "analysis" else "content")
            return True
        hits = [(self._buf.find(e), e) for e in ENDS]
        hits = [h for h in hits if h[0] >= 0]
        if hits:
            i, tag = min(hits)
            self._emit(self._buf[:i], out)
            self._buf, self._state = self._buf[i + len(tag):], "start"
            self._end_message(out)
            return True
        hold = max(overlap(self._buf, e) for e in ENDS)
        cut = len(self._buf) - hold
        self._emit(self._buf[:cut], out)
        self._buf = self._buf[cut:]
        return False

    def _emit(self, text: str, out: list[ParsedEvent]) -> None:
        if not text:
            return
        if self._kind == "tool":
            self._tool_body += text
        elif self._kind == "thinking":
            out.append(ThinkingDelta(text))
        else:
            out.append(TextDelta(text))

    def _end_message(self, out: list[ParsedEvent]) -> None:
        if self._kind == "tool":
            body, self._tool_body = self._tool_body, ""
            name = self.names.user(self._recipient.removeprefix("functions."))
            try:
                args = json_args(json.loads(body)) if body.strip() else {}
            except (BadCall, ValueError):
                out.append(TextDelta(body))
            else:
                out.append(ToolCallEvent(name=name, arguments=args, id=call_id(),
                                         index=self._index))
                self._index += 1
        self._kind, self._recipient = "content", ""


def harmony() -> HarmonyParser:
    return HarmonyParser()
