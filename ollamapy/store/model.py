"""What the rest of ollamapy knows about one stored model (the store resolves names into this).

This is the contract between the model store and its users (scheduler, inference, show):
everything a runner launch or a prompt render needs, already read from the manifest and layers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from ollamapy.inference.jsontypes import JsonObject


@dataclass(frozen=True)
class Model:
    name: str                     # canonical, e.g. registry.ollama.ai/library/smollm2:135m
    short_name: str               # shortest display form, e.g. smollm2:135m
    digest: str                   # sha256 hex of the manifest bytes (no "sha256:" prefix)
    model_path: Path              # the GGUF blob (application/vnd.ollama.image.model)
    size: int                     # total bytes of all layers
    modified_at: datetime
    projector_paths: tuple[Path, ...] = ()   # ...image.projector layers (-> --mmproj)
    adapter_paths: tuple[Path, ...] = ()     # ...image.adapter layers (-> --lora)
    template: str | None = None              # TEMPLATE layer (Go template); None -> GGUF Jinja
    system: str | None = None                # SYSTEM layer
    license: tuple[str, ...] = ()
    params: JsonObject = field(default_factory=dict)    # params layer (Modelfile PARAMETERs)
    messages: tuple[JsonObject, ...] = ()               # MESSAGE layer
    config: JsonObject = field(default_factory=dict)    # config blob (model_family, ...)
    capabilities: tuple[str, ...] = ()       # completion, embedding, tools, insert, vision, ...
    # A TEMPLATE layer exists, but the GGUF's Jinja template renders the chat instead (Ollama's
    # shouldPreferChatTemplate: it can do more, e.g. a tool round trip the Go template lacks).
    prefer_jinja: bool = False
    reranker: bool = False  # the GGUF's pooling type is rank: served by /v1/rerank
