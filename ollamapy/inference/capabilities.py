"""A model's capabilities (`completion`, `embedding`, `tools`, `thinking`, `vision`, `audio`,
`insert`) derived the way Ollama's `server/images.go` `Capabilities()` derives them, in its order.

Pure: `ModelFacts` carries what the store knows (TEMPLATE source, GGUF keys, projector facts,
config's renderer/parser/family); `capabilities(facts)` decides. Which template the runner uses
decides which template's capabilities count: a RENDERER/PARSER, harmony or a Go TEMPLATE means
Ollama renders the chat itself and the GGUF's Jinja template is not consulted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ollamapy.inference import parsers

if TYPE_CHECKING:
    from ollamapy.gguf import GGUFFile

GPTOSS = ("gptoss", "gpt-oss")


@dataclass(frozen=True)
class ProjectorFacts:
    has_audio: bool = False  # `has_audio_encoder` (or `*.has_audio_encoder`) true
    projector_type: str = ""  # `vision.projector_type`


@dataclass(frozen=True)
class ModelFacts:
    go_template: str | None = None  # the TEMPLATE layer (None: the model has none)
    chat_template: str | None = None  # GGUF `tokenizer.chat_template`
    is_gguf: bool = True
    architecture: str = ""
    pooling: bool = False  # GGUF `<arch>.pooling_type` present
    vision_blocks: bool = False  # GGUF `<arch>.vision.block_count` present
    audio_blocks: bool = False  # GGUF `<arch>.audio.block_count` present
    projectors: tuple[ProjectorFacts, ...] = ()
    renderer: str = ""
    parser: str = ""
    model_family: str = ""
    model_families: tuple[str, ...] = ()
    model_format: str = ""
    config_capabilities: tuple[str, ...] = ()
    go_template_env: bool | None = None  # OLLAMA_GO_TEMPLATE, when set
    prefer_chat: bool | None = None  # None: decided as Ollama's GetModel decides it


def _add(caps: list[str], *new: str) -> None:
    for c in new:
        if c not in caps:
            caps.append(c)


# -- Go templates ------------------------------------------------------------------------------

def go_template_vars(source: str) -> set[str] | None:
    """Lower-cased fields the template reads (`.Tools` -> tools), None when it does not parse."""
    from ollamapy.template.gotemplate import TemplateError, parse

    try:
        parse(source)
    except (TemplateError, RecursionError, ValueError):
        return None
    return template_vars(source)


def template_vars(template: str) -> set[str]:
    """Lower-cased identifiers a Go template refers to (`.Tools` -> 'tools')."""
    return {v.lower() for v in re.findall(r"\.([A-Za-z_][A-Za-z0-9_]*)", go_actions(template))}


def go_actions(template: str) -> str:
    """The text inside every `{{ ... }}`, joined. One forward scan (a lazy regex here was
    quadratic: 400k `{` in a TEMPLATE layer stalled /api/tags for minutes)."""
    out: list[str] = []
    i = 0
    while (start := template.find("{{", i)) != -1:
        end = template.find("}}", start + 2)
        if end == -1:
            break
        out.append(template[start + 2:end])
        i = end + 2
    return " ".join(out)


def go_template_capabilities(source: str) -> list[str]:
    from ollamapy.template.gotemplate import parse
    from ollamapy.template.thinking import thinking_tags

    v = go_template_vars(source)
    if v is None:
        return []
    caps: list[str] = []
    if "tools" in v:
        caps.append("tools")
    if "suffix" in v:
        caps.append("insert")
    if thinking_tags(parse(source)) is not None:
        caps.append("thinking")
    return caps


def go_template_has_tool_round_trip(source: str | None) -> bool:
    if source is None:
        return False
    v = go_template_vars(source)
    if v is None or "tools" not in v or "toolcalls" not in v:
        return False
    return 'eq .Role "tool"' in source or "tool_response" in source or "TOOL_RESULTS" in source


# -- Jinja chat templates ----------------------------------------------------------------------

def chat_template_has_tools(t: str) -> bool:
    return "tools" in t or "tool_call" in t


def chat_template_has_thinking(t: str) -> bool:
    if "<think>" in t and "</think>" in t:
        return True
    return (("content.split('</think>')" in t or 'content.split("</think>")' in t)
            and "reasoning_content" not in t and "<SPECIAL_12>" not in t)


_TOOL_ROLE = ("tool_response", "tool_results", "role'] == 'tool'", "role'] == \"tool\"",
              "role\"] == 'tool'", "role\"] == \"tool\"", "message.role == 'tool'",
              "message.role == \"tool\"", "ipython")


def chat_template_has_tool_round_trip(t: str) -> bool:
    if not chat_template_has_tools(t):
        return False
    calls = "tool_calls" in t or "assistant_tool_call" in t
    return calls and any(s in t for s in _TOOL_ROLE)


def chat_template_capabilities(t: str | None) -> list[str]:
    if not t:
        return []
    caps: list[str] = []
    if chat_template_has_tools(t):
        caps.append("tools")
    if chat_template_has_thinking(t):
        caps.append("thinking")
    return caps


# -- which template is used --------------------------------------------------------------------

def prefer_chat_template(f: ModelFacts) -> bool:
    """Ollama's `shouldPreferChatTemplate`: the GGUF template wins over the Go TEMPLATE when it
    can do more, or the same with a tool round trip the Go template lacks."""
    if f.prefer_chat is not None:
        return f.prefer_chat
    if (f.go_template is None or not f.chat_template or f.go_template_env is not None
            or f.renderer or f.parser or uses_harmony(f)):
        return False
    chat = chat_template_capabilities(f.chat_template)
    go = go_template_capabilities(f.go_template)
    if len(chat) > len(go):
        return (not go_template_has_tool_round_trip(f.go_template)
                or chat_template_has_tool_round_trip(f.chat_template))
    if set(chat) != set(go) or "tools" not in chat:
        return False
    return (chat_template_has_tool_round_trip(f.chat_template)
            and not go_template_has_tool_round_trip(f.go_template))


def uses_go_template(f: ModelFacts) -> bool:
    if f.go_template is None:
        return False
    if f.go_template_env is not None:
        return f.go_template_env
    return not prefer_chat_template(f)


def uses_harmony(f: ModelFacts) -> bool:
    t = f.go_template or ""
    return f.model_family in GPTOSS and "<|start|>" in t and "<|end|>" in t


def uses_ollama_rendered_chat(f: ModelFacts) -> bool:
    """True: Ollama renders the prompt (renderer, parser, harmony or Go template) and starts
    the runner without Jinja; False: the GGUF's chat template renders it."""
    return bool(f.renderer or f.parser or uses_harmony(f) or uses_go_template(f))


# -- the decision ------------------------------------------------------------------------------

def capabilities(f: ModelFacts) -> list[str]:
    caps: list[str] = []
    _add(caps, *f.config_capabilities)
    if f.is_gguf:
        if not uses_ollama_rendered_chat(f):
            _add(caps, *chat_template_capabilities(f.chat_template))
        _add(caps, "embedding" if f.pooling else "completion")
        if f.vision_blocks:
            _add(caps, "vision")
        if f.audio_blocks:
            _add(caps, "audio")
    if f.projectors:
        _add(caps, "vision")
        for p in f.projectors:
            if p.has_audio and p.projector_type != "gemma3nv":
                _add(caps, "audio")
    if f.go_template is not None and uses_go_template(f):
        _add(caps, *go_template_capabilities(f.go_template))
    parser = parsers.get(f.parser) if f.parser else None
    if parser is not None:
        if parser.has_tool_support():
            _add(caps, "tools")
        if parser.has_thinking_support():
            _add(caps, "thinking")
    if f.model_family in GPTOSS:
        _add(caps, "thinking")
    return [c for c in caps if not _suppressed(f, c)]


def _suppressed(f: ModelFacts, cap: str) -> bool:
    st = f.model_format == "safetensors"
    nemotron_st = st and ("nemotron-3-nano" in (f.parser, f.renderer)
                          or "nemotron_h_omni" in (f.model_family, *f.model_families))
    gemma4_st = st and f.renderer.startswith("gemma4")
    if cap == "vision":
        return gemma4_st or nemotron_st
    if cap == "audio":
        return (gemma4_st or nemotron_st or (st and f.renderer == "glimmer")
                or f.architecture == "nemotron_h_omni"
                or "nemotron_h_omni" in (f.model_family, *f.model_families))
    return False


# -- from what the store has -------------------------------------------------------------------

def _projector_facts(kv: Mapping[str, Any]) -> ProjectorFacts:
    audio = kv.get("has_audio_encoder") is True or any(
        k.endswith(".has_audio_encoder") and v is True for k, v in kv.items())
    ptype = kv.get("vision.projector_type") or kv.get("clip.vision.projector_type") or ""
    return ProjectorFacts(has_audio=audio, projector_type=ptype if isinstance(ptype, str) else "")


def facts_from(gguf_kv: Mapping[str, Any] | None, template: str | None,
               projector_kvs: Iterable[Mapping[str, Any]], config: Mapping[str, Any],
               go_template_env: bool | None = None) -> ModelFacts:
    """ModelFacts from a GGUF's KV map, the TEMPLATE layer, each projector's KV map and the
    manifest config blob (`renderer`, `parser`, `model_family`, `capabilities`, ...)."""
    kv = gguf_kv or {}
    arch = kv.get("general.architecture")
    arch = arch if isinstance(arch, str) else ""
    chat = kv.get("tokenizer.chat_template")

    def s(key: str) -> str:
        v = config.get(key)
        return v if isinstance(v, str) else ""

    fams = config.get("model_families")
    caps = config.get("capabilities")
    return ModelFacts(
        go_template=template, chat_template=chat if isinstance(chat, str) else None,
        is_gguf=gguf_kv is not None, architecture=arch,
        pooling=f"{arch}.pooling_type" in kv, vision_blocks=f"{arch}.vision.block_count" in kv,
        audio_blocks=f"{arch}.audio.block_count" in kv,
        projectors=tuple(_projector_facts(p) for p in projector_kvs),
        renderer=s("renderer"), parser=s("parser"), model_family=s("model_family"),
        model_families=tuple(x for x in fams if isinstance(x, str)) if isinstance(fams, list)
        else (), model_format=s("model_format"),
        config_capabilities=tuple(x for x in caps if isinstance(x, str))
        if isinstance(caps, list) else (),
        go_template_env=go_template_env,
    )


def projector_kvs(paths: Iterable[Path]) -> list[Mapping[str, Any]]:
    """Each projector GGUF's KV map (unreadable ones count as a projector without audio)."""
    from ollamapy.gguf import GGUFError, read_gguf

    out: list[Mapping[str, Any]] = []
    for p in paths:
        try:
            out.append(read_gguf(p).kv)
        except (OSError, GGUFError):
            out.append({})
    return out


def model_capabilities(gguf: GGUFFile | None, template: str | None, projectors: list[Path],
                       config: Mapping[str, Any]) -> list[str]:
    """Drop-in for `ollamapy.store.store.capabilities` (same arguments)."""
    return capabilities(facts_from(gguf.kv if gguf is not None else None, template,
                                   projector_kvs(projectors), config))
