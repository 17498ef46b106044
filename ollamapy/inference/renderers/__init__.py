"""Prompt renderers by the name a Modelfile's `RENDERER` (or a pulled config's `renderer`) gives.

`get(name)` returns a renderer or None for an unknown name; `get(name, image_marker=...)` makes
images render as the runner's media marker (llama-server's `<__media__>`) instead of the
family's own vision tokens. A renderer whose prompt starts with the BOS token says so in
`leading_bos` (the runner must then not add another).
"""

from __future__ import annotations

from collections.abc import Callable

from ollamapy.inference.family import Renderer
from ollamapy.inference.renderers.deepseek import DeepSeek31Renderer
from ollamapy.inference.renderers.gemma4 import Gemma4Renderer
from ollamapy.inference.renderers.glm import GLM47Renderer
from ollamapy.inference.renderers.lfm2 import LFM2Renderer
from ollamapy.inference.renderers.nemotron import NemotronRenderer
from ollamapy.inference.renderers.olmo3 import Olmo3Renderer, Olmo3ThinkRenderer
from ollamapy.inference.renderers.qwen3coder import Qwen3CoderRenderer
from ollamapy.inference.renderers.qwen3vl import Qwen3VLRenderer, Qwen35Renderer

_REGISTRY: dict[str, Callable[[str | None], Renderer]] = {
    "qwen3-coder": lambda _m: Qwen3CoderRenderer(),
    "qwen3-vl-instruct": lambda m: Qwen3VLRenderer(False, m),
    "qwen3-vl-thinking": lambda m: Qwen3VLRenderer(True, m),
    "qwen3.5": lambda m: Qwen35Renderer(True, m),
    "deepseek3.1": lambda _m: DeepSeek31Renderer(),
    "glm-4.7": lambda _m: GLM47Renderer(),
    "olmo3": lambda _m: Olmo3Renderer(),
    "gemma4": lambda m: Gemma4Renderer(False, m),
    "gemma4-small": lambda m: Gemma4Renderer(False, m),
    "gemma4-large": lambda m: Gemma4Renderer(True, m),
    "lfm2": lambda m: LFM2Renderer(False, m),
    "nemotron-3-nano": lambda m: NemotronRenderer(False, m),
    "nemotron-3.5-nano": lambda m: NemotronRenderer(True, m),
    "lfm2-thinking": lambda m: LFM2Renderer(True, m),
    "olmo3.1": lambda _m: Olmo3Renderer(extended_system=True),
    "olmo3-think": lambda _m: Olmo3ThinkRenderer(),
    "olmo3-32b-think": lambda _m: Olmo3ThinkRenderer(is_32b=True),
}


def get(name: str, image_marker: str | None = None) -> Renderer | None:
    make = _REGISTRY.get(name)
    return make(image_marker) if make is not None else None


def names() -> list[str]:
    return sorted(_REGISTRY)
