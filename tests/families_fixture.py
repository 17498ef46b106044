"""Family test models built from a real small GGUF (Gemma 3 270M or SmolLM2): a copy whose
`tokenizer.chat_template` is swapped (or removed), registered under an Ollama-style manifest
whose config carries the family's RENDERER/PARSER and whose TEMPLATE layer is the family's, so a
real llama-server loads it and the family's rendering/parsing path runs end to end.

    gguf = copy_with_chat_template(gemma_model.ensure(), tmp / "q.gguf", QWEN3_JINJA)
    name = write_family_model(models_dir, "fam/qwen3-coder:test", gguf, FAMILIES["qwen3-coder"])
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gguf as ggufpkg
from gguf.scripts.gguf_new_metadata import MetadataDetails, copy_with_new_metadata

from ollamapy.store import store as st
from ollamapy.store.names import ModelName
from ollamapy.store.register import import_blob

CHAT_TEMPLATE_KEY = "tokenizer.chat_template"


@dataclass(frozen=True)
class Family:
    """What an Ollama library Modelfile for the family says."""

    template: str | None = "{{ .Prompt }}"  # None: no TEMPLATE layer (the GGUF's Jinja)
    renderer: str = ""
    parser: str = ""
    requires: str = ""
    model_family: str = ""
    params: dict[str, Any] = field(default_factory=dict)


# RENDERER/PARSER pairs as Ollama's library models use them (renderer.go / parsers.go names).
FAMILIES: dict[str, Family] = {
    "qwen3-coder": Family(renderer="qwen3-coder", parser="qwen3-coder", model_family="qwen3moe"),
    "qwen3.5": Family(renderer="qwen3.5", parser="qwen3.5", model_family="qwen35"),
    "qwen3-vl-instruct": Family(renderer="qwen3-vl-instruct", parser="qwen3-vl-instruct",
                                model_family="qwen3vl"),
    "qwen3-vl-thinking": Family(renderer="qwen3-vl-thinking", parser="qwen3-vl-thinking",
                                model_family="qwen3vl"),
    # parser-only families (the prompt comes from the TEMPLATE / GGUF template)
    "deepseek3": Family(parser="deepseek3", model_family="deepseek2"),
    "glm-4.7": Family(parser="glm-4.7", model_family="glm4moe"),
    "ministral": Family(parser="ministral", model_family="mistral3"),
    "lfm2": Family(parser="lfm2", model_family="lfm2"),
    "olmo3": Family(parser="olmo3", model_family="olmo3"),
    "nemotron-3-nano": Family(parser="nemotron-3-nano", model_family="nemotron_h"),
    # renderer + parser families of Ollama's library
    "gemma4": Family(renderer="gemma4", parser="gemma4", model_family="gemma4"),
    "nemotron-3-nano-r": Family(renderer="nemotron-3-nano", parser="nemotron-3-nano",
                                model_family="nemotron_h"),
}

# A Qwen3-style Jinja template that reads `enable_thinking` (for /apply-template checks).
QWEN3_JINJA = (
    "{% for message in messages %}<|im_start|>{{ message.role }}\n{{ message.content }}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n"
    "{% endif %}{% endif %}")
# A gpt-oss-style Jinja template that reads `reasoning_effort`.
EFFORT_JINJA = (
    "<|start|>system<|message|>Reasoning: {{ reasoning_effort | default('medium') }}<|end|>"
    "{% for message in messages %}<|start|>{{ message.role }}<|message|>{{ message.content }}"
    "<|end|>{% endfor %}{% if add_generation_prompt %}<|start|>assistant{% endif %}")


def copy_with_chat_template(src: Path, dst: Path, chat_template: str | None) -> Path:
    """Copy GGUF `src` to `dst` with its chat template replaced (None: removed)."""
    reader = ggufpkg.GGUFReader(src, "r")
    arch_field = reader.get_field(ggufpkg.Keys.General.ARCHITECTURE)
    assert arch_field is not None, f"{src} has no general.architecture"
    arch = arch_field.contents()
    tmp = dst.with_name(dst.name + ".part")
    writer = ggufpkg.GGUFWriter(tmp, arch=arch, endianess=reader.endianess)
    align = reader.get_field(ggufpkg.Keys.General.ALIGNMENT)
    if align is not None:
        writer.data_alignment = int(align.contents())
    new: dict[str, MetadataDetails] = {}
    remove: list[str] = []
    if chat_template is None:
        remove.append(CHAT_TEMPLATE_KEY)
    else:
        new[CHAT_TEMPLATE_KEY] = MetadataDetails(ggufpkg.GGUFValueType.STRING, chat_template)
    copy_with_new_metadata(reader, writer, new, remove)
    tmp.replace(dst)
    return dst


def write_family_model(models_dir: Path, name: str, gguf_path: Path, family: Family,
                       *, system: str | None = None) -> str:
    """Register `gguf_path` as `name` with the family's TEMPLATE layer and a config blob naming
    its renderer/parser (Ollama's manifest layout) -> the display name."""
    store = st.ModelStore(models_dir)
    model_digest = import_blob(store, gguf_path)
    layers: list[dict[str, Any]] = [{"mediaType": st.MEDIA_MODEL, "digest": model_digest,
                                     "size": gguf_path.stat().st_size}]

    def text_layer(media: str, data: bytes) -> None:
        d, _ = store.write_blob(data)
        layers.append({"mediaType": media, "digest": d, "size": len(data)})

    if family.template is not None:
        text_layer(st.MEDIA_TEMPLATE, family.template.encode())
    if system is not None:
        text_layer(st.MEDIA_SYSTEM, system.encode())
    if family.params:
        text_layer(st.MEDIA_PARAMS, json.dumps(family.params).encode())
    config: dict[str, Any] = {
        "model_format": "gguf", "model_family": family.model_family,
        "model_families": [family.model_family] if family.model_family else None,
        "model_type": "", "file_type": "",
    }
    for key in ("renderer", "parser", "requires"):
        if getattr(family, key):
            config[key] = getattr(family, key)
    config.update({"architecture": "amd64", "os": "linux",
                   "rootfs": {"type": "layers", "diff_ids": [x["digest"] for x in layers]}})
    cfg = st.manifest_json(config)
    cfg_digest, _ = store.write_blob(cfg)
    manifest = {"schemaVersion": 2, "mediaType": st.MEDIA_MANIFEST,
                "config": {"mediaType": st.MEDIA_CONFIG, "digest": cfg_digest,
                           "size": len(cfg)},
                "layers": layers}
    mname = ModelName.parse(name)
    store.write_manifest(mname, st.manifest_json(manifest))
    return mname.display_shortest()
