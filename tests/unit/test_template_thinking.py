"""Thinking split on fixed outputs, whole and streamed in tiny pieces."""

from __future__ import annotations

import pytest

from ollamapy.template.gotemplate import parse
from ollamapy.template.thinking import ThinkingParser, tags_from_jinja, thinking_tags


def run(text: str, step: int, prompt: str = "") -> tuple[str, str]:
    p = ThinkingParser.for_prompt(("<think>", "</think>"), prompt)
    th = co = ""
    for i in range(0, len(text), step):
        a, b = p.add(text[i:i + step])
        th += a
        co += b
    a, b = p.finish()
    return th + a, co + b


@pytest.mark.parametrize("step", [1, 2, 100])
@pytest.mark.parametrize(("text", "prompt", "thinking", "content"), [
    ("<think>\nLet me see.\n</think>\n\nHello!", "", "Let me see.", "Hello!"),
    ("  <think>a b</think>c", "", "a b", "c"),
    ("Just an answer.", "", "", "Just an answer."),
    ("already thinking\n</think>\nanswer", "<|im_start|>assistant\n<think>\n",
     "already thinking", "answer"),
    ("<think>never closed", "", "never closed", ""),
    ("<thin", "", "", "<thin"),
])
def test_split(text: str, prompt: str, thinking: str, content: str, step: int) -> None:
    assert run(text, step, prompt) == (thinking, content)


def test_tags_from_template() -> None:
    t = parse("{{ range .Messages }}{{ if .Thinking }}<think>\n{{ .Thinking }}\n</think>\n"
              "{{ end }}{{ .Content }}{{ end }}")
    assert thinking_tags(t) == ("<think>", "</think>")
    assert thinking_tags(parse("{{ .Prompt }}")) is None
    assert tags_from_jinja("{{ '<think>' }}x{{ '</think>' }}") == ("<think>", "</think>")
