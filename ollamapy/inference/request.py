"""A request in ollamapy's own terms: what every API family's translator builds.

Messages and tools reuse the native wire types (`ollamapy.api.inference`): they are already
ollamapy's vocabulary, and the native API is a 1:1 translation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ollamapy.api.inference import Message, Think, Tool
from ollamapy.inference.jsontypes import JsonObject


@dataclass(slots=True)
class InferenceRequest:
    """Exactly one of `messages` (chat) and `prompt` (generate) is set.

    `format` is Ollama's `format` value (None, "json" or a JSON schema dict); `options` are
    Ollama options (`num_predict`, `temperature`, `stop`, ...) before the model's defaults are
    merged in; `keep_alive` is seconds (None: the server default; negative: forever).
    """

    model: str
    messages: list[Message] | None = None
    prompt: str | None = None
    suffix: str = ""
    system: str | None = None
    template: str | None = None  # generate's per-request template override
    context: list[int] | None = None  # generate's previous `context`
    raw: bool = False
    images: list[str] = field(default_factory=list)  # base64, generate only (chat: per message)
    tools: list[Tool] | None = None
    format: Any = None
    think: Think = None
    options: JsonObject = field(default_factory=dict)
    keep_alive: float | None = None
    truncate: bool = True
    shift: bool | None = None  # None: the model's default (off for deepseek2, as in Ollama)
    logprobs: bool = False
    top_logprobs: int = 0
    want_context: bool = False  # generate: return prompt+answer token ids in Done.context
    debug_render_only: bool = False
    start_ns: int = 0  # time.monotonic_ns() when the request arrived (0: when run starts)
