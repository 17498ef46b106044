"""think -> llama-server chat_template_kwargs (Ollama's llm/llama_server.go
llamaServerChatTemplateKwargs at ollama fb307609)."""

from __future__ import annotations

from typing import Any

import pytest

from ollamapy.inference.renderers.jinja_kwargs import chat_template_kwargs


@pytest.mark.parametrize(("think", "want"), [
    (None, None),
    (True, {"enable_thinking": True}),
    (False, {"enable_thinking": False}),
    ("low", {"enable_thinking": True, "reasoning_effort": "low"}),
    ("medium", {"enable_thinking": True, "reasoning_effort": "medium"}),
    ("high", {"enable_thinking": True, "reasoning_effort": "high"}),
    ("max", {"enable_thinking": True, "reasoning_effort": "max"}),
])
def test_kwargs(think: Any, want: Any) -> None:
    assert chat_template_kwargs(think) == want
