"""`think` for models rendered by their GGUF's Jinja template (through llama-server): the
`chat_template_kwargs` that llama-server's `/apply-template` and `/v1/chat/completions` merge
into the template's variables, exactly as Ollama's `llamaServerChatTemplateKwargs` builds them.

`enable_thinking` is what Qwen/DeepSeek/GLM-style templates read (llama-server also takes it as
its own thinking switch); `reasoning_effort` is what gpt-oss-style templates read. Unset `think`
sends nothing, so the template's own default applies.
"""

from __future__ import annotations

from ollamapy.api.inference import THINK_LEVELS, Think
from ollamapy.inference.jsontypes import JsonObject


def thinking_enabled(think: Think) -> bool:
    """Ollama's ThinkValue.Bool(): true, or any of the levels."""
    if isinstance(think, bool):
        return think
    return think in THINK_LEVELS


def chat_template_kwargs(think: Think) -> JsonObject | None:
    if think is None:
        return None
    kwargs: JsonObject = {"enable_thinking": thinking_enabled(think)}
    if isinstance(think, str) and think:
        kwargs["reasoning_effort"] = think
    return kwargs
