"""Which prompt renderer and output parser a model uses, decided as Ollama's routes.go decides
it, before the first upstream request:

- prompt: the config's `renderer` (a built-in family renderer); else the Go TEMPLATE when
  Ollama renders the chat (`capabilities.uses_ollama_rendered_chat`); else the GGUF's Jinja
  template through llama-server, with `chat_template_kwargs` for think levels.
- output: the config's `parser` (harmony for gpt-oss templates); else, for a Go template and a
  request with tools, the family parser of the template's tool-call tag.

Pure (the store already read what it needs into `Model`).
"""

from __future__ import annotations

from collections.abc import Sequence

from ollamapy.api.inference import Think, Tool
from ollamapy.inference import parsers, renderers
from ollamapy.inference.capabilities import GPTOSS
from ollamapy.inference.family import Parser, Renderer
from ollamapy.inference.parsers import deepseek, gemma4, harmony, llama3
from ollamapy.inference.parsers._tagged import TaggedParser
from ollamapy.store.model import Model
from ollamapy.template.gotemplate import Template
from ollamapy.template.tools import tool_tag


def _config(model: Model, key: str) -> str:
    v = model.config.get(key)
    return v if isinstance(v, str) else ""


def renderer_name(model: Model) -> str:
    return _config(model, "renderer")


def uses_harmony(model: Model) -> bool:
    """Ollama's shouldUseHarmony: a gpt-oss family model whose template speaks harmony."""
    t = model.template or ""
    return _config(model, "model_family") in GPTOSS and "<|start|>" in t and "<|end|>" in t


def parser_name(model: Model) -> str:
    name = _config(model, "parser")
    if not name and uses_harmony(model):
        return "harmony"
    return name


def ollama_renders(model: Model) -> bool:
    """True: ollamapy renders the prompt itself (renderer, parser, harmony or Go template), so
    the runner starts without Jinja; False: the GGUF's chat template renders it."""
    if renderer_name(model):
        return True
    if model.template is None:
        return False
    return bool(parser_name(model)) or not model.prefer_jinja


def go_template_source(model: Model) -> str | None:
    """The TEMPLATE layer when it renders the prompt (no renderer, not overridden by Jinja)."""
    if renderer_name(model) or model.template is None:
        return None
    if model.prefer_jinja and not parser_name(model):
        return None
    return model.template


def family_renderer(model: Model, image_marker: str | None) -> Renderer | None:
    name = renderer_name(model)
    return renderers.get(name, image_marker=image_marker) if name else None


def leading_bos(r: Renderer | None) -> str:
    """The BOS text a renderer starts its prompt with ("" when it does not)."""
    v = getattr(r, "leading_bos", "")
    return v if isinstance(v, str) else ""


def harmony_think(think: Think) -> Think:
    """harmony's Reasoning only knows low/medium/high: `max` is sent as `high` (Ollama)."""
    return "high" if think == "max" else think


def family_parser(model: Model, template: Template | None,
                  tools: Sequence[Tool] | None) -> Parser | None:
    """A fresh parser for this request, or None (then the generic thinking/tool parsers of
    template/thinking.py and template/tools.py apply)."""
    name = parser_name(model)
    if name:
        return parsers.get(name)
    if template is not None and tools:
        fmt = parsers.for_tool_tag(tool_tag(template) or "{")
        return parsers.get(fmt) if fmt else None
    return None


def special_token_of_tag(tag: str) -> str:
    """The special token a Go template's tool-call tag starts with (`[TOOL_CALLS][` ->
    `[TOOL_CALLS]`), "" for a bare `{`/`[` (Ollama's llamaServerPreservedTokensForToolTag)."""
    tag = tag.strip()
    if tag in ("", "{", "["):
        return ""
    close = {"[": "]", "<": ">"}.get(tag[0])
    if close is not None:
        end = tag.find(close)
        if end > 0:
            return tag[:end + 1]
    return tag


_HARMONY_TOKENS = (harmony.START, harmony.CHANNEL, harmony.MESSAGE, harmony.CONSTRAIN,
                   *harmony.ENDS)


def preserved_tokens(p: Parser | None) -> list[str]:
    """The parser's tags, which llama-server must print as text rather than swallow as special
    tokens (`preserved_tokens` on /completion; it keeps those that are one token)."""
    if p is None:
        return []
    if isinstance(p, harmony.HarmonyParser):
        return list(_HARMONY_TOKENS)
    if isinstance(p, llama3.Llama3JsonParser):
        return [llama3.PYTHON_TAG]
    if not isinstance(p, TaggedParser):
        return []
    s = p.spec
    tags = [s.tool_open, s.tool_close, s.think_open, s.think_close, s.json_after,
            *s.after_call_noise]
    if s.tool_open == deepseek.CALLS_BEGIN:
        tags += [deepseek.CALL_BEGIN, deepseek.CALL_END, deepseek.SEP]
    if s.tool_open == "<|tool_call>":
        tags.append(gemma4.STRING)
    out: list[str] = []
    for t in tags:
        if t and t not in out:
            out.append(t)
    return out
