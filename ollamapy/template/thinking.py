"""Split a thinking model's output into `thinking` and `content`.

Tags are inferred from the template (the text around `.Thinking` inside `range .Messages`, e.g.
`<think>` / `</think>`); whitespace right after a tag is trimmed; when the rendered prompt already
ends with the opening tag, parsing starts inside the thinking block. Partial tags at the end of a
piece are held back so a tag split across stream events is still recognised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ollamapy.template.gotemplate import Action, Branch, Template, Text


def thinking_tags(tmpl: Template | None) -> tuple[str, str] | None:
    """(open, close) tags around `.Thinking` in the template's message loop, or None."""
    if tmpl is None:
        return None
    seq = _flatten(tmpl.nodes)
    for i, item in enumerate(seq):
        if item == "\0THINKING":
            before = next((s for s in reversed(seq[:i]) if not s.startswith("\0")), "")
            after = next((s for s in seq[i + 1:] if not s.startswith("\0")), "")
            open_tag = before.strip().split("\n")[-1].strip()
            close_tag = after.strip().split("\n")[0].strip()
            if open_tag and close_tag:
                return open_tag, close_tag
    return None


def _flatten(nodes: list[Any]) -> list[str]:
    out: list[str] = []
    for n in nodes:
        if isinstance(n, Text):
            out.append(n.text)
        elif isinstance(n, Action):
            thinking = any(a.kind in ("field", "dot") and a.chain[-1:] == ["Thinking"]
                           for c in n.pipe.cmds for a in c.args)
            out.append("\0THINKING" if thinking else "\0action")
        elif isinstance(n, Branch):
            out.extend(_flatten(n.body))
            if n.else_body:
                out.extend(_flatten(n.else_body))
    return out


def tags_from_jinja(source: str) -> tuple[str, str] | None:
    if "<think>" in source and "</think>" in source:
        return "<think>", "</think>"
    return None


def _overlap(s: str, tag: str) -> int:
    for k in range(min(len(tag) - 1, len(s)), 0, -1):
        if s.endswith(tag[:k]):
            return k
    return 0


@dataclass
class ThinkingParser:
    """States: "start" (maybe an opening tag), "thinking", "content"."""

    open_tag: str
    close_tag: str
    state: str = "start"
    buffer: str = ""
    started_inside: bool = False   # the prompt itself opened the thinking block
    _trim: bool = False

    @classmethod
    def for_prompt(cls, tags: tuple[str, str], prompt: str) -> ThinkingParser:
        p = cls(*tags)
        if prompt.rstrip().endswith(tags[0]):
            p.state = "thinking"
            p.started_inside = True
            p._trim = True
        return p

    def add(self, piece: str) -> tuple[str, str]:
        """-> (thinking, content) parts of this piece."""
        self.buffer += piece
        thinking = content = ""
        while True:
            if self.state == "start":
                s = self.buffer.lstrip()
                if not s:
                    return thinking, content
                if s.startswith(self.open_tag):
                    self.buffer = s[len(self.open_tag):]
                    self.state = "thinking"
                    self._trim = True
                    continue
                if self.open_tag.startswith(s):
                    return thinking, content  # a tag may be forming
                self.state = "content"
                continue
            if self.state == "thinking":
                if self._trim:
                    self.buffer = self.buffer.lstrip()
                    if not self.buffer:
                        return thinking, content
                    self._trim = False
                i = self.buffer.find(self.close_tag)
                if i >= 0:
                    thinking += self.buffer[:i].rstrip()
                    self.buffer = self.buffer[i + len(self.close_tag):]
                    self.state = "content"
                    self._trim = True
                    continue
                keep = _overlap(self.buffer, self.close_tag)
                # hold trailing whitespace too: it is trimmed if the close tag follows
                cut = len(self.buffer) - keep
                body = self.buffer[:cut]
                stripped = body.rstrip()
                thinking += stripped
                self.buffer = body[len(stripped):] + self.buffer[cut:]
                return thinking, content
            # content
            if self._trim:
                self.buffer = self.buffer.lstrip()
                if not self.buffer:
                    return thinking, content
                self._trim = False
            content += self.buffer
            self.buffer = ""
            return thinking, content

    def finish(self) -> tuple[str, str]:
        rest, self.buffer = self.buffer, ""
        if self.state == "thinking":
            return rest.rstrip(), ""
        return "", rest
