"""The one manifest parser, for pulled and stored manifests alike: parse, validate, list blobs.

A manifest comes from a server we do not trust (or a store someone else wrote): every digest
passes `validate_digest` (the only way a digest may become a path) and every size must be a sane
non-negative integer before anything else looks at it.
"""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from ollamapy.errors import OllamaError
from ollamapy.inference.jsontypes import JsonObject
from ollamapy.store.digest import validate_digest

MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_BLOB_SIZE = 1 << 44  # 16 TiB: anything larger is a lie, not a model


class Layer(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    media_type: StrictStr = Field(default="", alias="mediaType")
    digest: StrictStr
    size: StrictInt = Field(ge=0, le=MAX_BLOB_SIZE)
    from_: StrictStr | None = Field(default=None, alias="from")


class Manifest(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    schema_version: int = Field(default=2, alias="schemaVersion")
    media_type: str | None = Field(default=None, alias="mediaType")
    config: Layer | None = None
    layers: list[Layer] = Field(default_factory=list)

    def blobs(self) -> list[Layer]:
        """Layers then config, each digest once (a manifest may repeat a digest)."""
        seen: set[str] = set()
        out: list[Layer] = []
        for layer in [*self.layers, *([self.config] if self.config else [])]:
            if layer.digest not in seen:
                seen.add(layer.digest)
                out.append(layer)
        return out


def parse_manifest(data: bytes) -> Manifest:
    """Bytes from a registry (or the store) -> Manifest with canonical, validated digests.
    Raises OllamaError on anything malformed; BadRequest('invalid digest format') on a bad
    digest such as `sha256:../../etc/passwd`."""
    return _validated(_decode(data))


def manifest_object(data: bytes) -> JsonObject:
    """The same checks, but the manifest's own JSON object back (what the store keeps and
    serves: unknown fields and the stored digest spelling survive)."""
    raw = _decode(data)
    _validated(raw)
    return raw


def _decode(data: bytes) -> JsonObject:
    if len(data) > MAX_MANIFEST_BYTES:
        raise OllamaError("manifest too large")
    from ollamapy.config import read_setting

    max_layers = int(read_setting("OLLAMAPY_MAX_MANIFEST_LAYERS"))
    if data.count(b'"digest"') > max_layers + 1:  # refused before building the tree
        raise OllamaError(f"invalid manifest: more than {max_layers} layers")
    try:
        raw: object = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise OllamaError(f"invalid manifest: {e}") from None
    if not isinstance(raw, dict):
        raise OllamaError("invalid manifest: not a JSON object")
    if isinstance(raw.get("layers"), list) and len(raw["layers"]) > max_layers:
        raise OllamaError(f"invalid manifest: more than {max_layers} layers")
    return raw


def _validated(raw: JsonObject) -> Manifest:
    try:
        m = Manifest.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise OllamaError(f"invalid manifest: {where}: {first['msg']}") from None
    for layer in [*m.layers, *([m.config] if m.config else [])]:
        layer.digest = validate_digest(layer.digest)
    if not m.layers and m.config is None:
        raise OllamaError("invalid manifest: no layers")
    return m
