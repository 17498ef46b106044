"""`POST /api/create` as a plain function: build layers, config and manifest, then write them.

Runs synchronously (call it in a worker thread); progress goes to a callback as Ollama-shaped
status dicts. Used by the HTTP route and by `python -m ollamapy.default_model --register`.
"""

from __future__ import annotations

import hashlib
import json
import platform
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ollamapy import options as opts
from ollamapy.errors import BadRequest, LimitExceeded, NotFound, OllamaError, StoreError
from ollamapy.gguf import GGUFError, human_number, read_gguf
from ollamapy.gofmt import parse_param
from ollamapy.inference.jsontypes import JsonObject
from ollamapy.store import store as st
from ollamapy.store.digest import validate_digest
from ollamapy.store.names import ModelName
from ollamapy.template import gotemplate

Progress = Callable[[JsonObject], None]


@dataclass
class CreateSpec:
    """The current /api/create JSON form, already type-checked."""

    from_: str | None = None
    files: dict[str, str] = field(default_factory=dict)
    adapters: dict[str, str] = field(default_factory=dict)
    template: str | None = None
    system: str | None = None
    parameters: JsonObject | None = None
    license: list[str] | None = None
    messages: list[JsonObject] | None = None
    renderer: str | None = None  # Modelfile RENDERER / request `renderer`: kept in the config
    parser: str | None = None
    requires: str | None = None
    # create --quantize: (source model blob, quantized blob, its file type), the quantized
    # blob replacing the source's model layer
    quantized: tuple[str, str, str] | None = None


def model_blob(store: st.ModelStore, spec: CreateSpec) -> str:
    """The digest of the model layer this create would use (what --quantize rewrites)."""
    if spec.files:
        for digest in spec.files.values():
            layer, _g = _gguf_layer(store, digest, want_adapter=False)
            if layer["mediaType"] == st.MEDIA_MODEL:
                return str(layer["digest"])
        raise BadRequest("no model file found in 'files'")
    base_name = ModelName.try_parse(spec.from_ or "")
    if base_name is None:
        raise BadRequest("invalid model name")
    try:
        manifest = store.read_manifest(base_name)
    except NotFound:
        raise NotFound(f"model '{spec.from_}' not found") from None
    for layer in manifest.get("layers", []):
        if layer.get("mediaType") == st.MEDIA_MODEL:
            return validate_digest(layer.get("digest"))
    raise StoreError(f"model '{spec.from_}' has no model layer")


def valid_rel_path(p: str) -> bool:
    """Go's fs.ValidPath: relative, slash-separated, no '.', '..' or empty elements."""
    if p == ".":
        return True
    if not p or p.startswith("/") or "\\" in p or "\x00" in p:
        return False
    return all(part not in ("", ".", "..") for part in p.split("/"))


def check_params(params: Mapping[str, Any]) -> JsonObject:
    """Create `parameters`: known options only (Ollama rejects unknown ones here), typed."""
    out: JsonObject = {}
    for k, v in params.items():
        if k not in opts.OPTIONS:
            if k in opts.LEGACY:
                continue
            raise BadRequest(f"unknown parameter '{k}'")
        if isinstance(v, str) and opts.OPTIONS[k].type != "string" and k != "stop":
            try:
                v = parse_param(k, [v])
            except ValueError as e:
                raise BadRequest(str(e)) from None
        c = opts.coerce(k, v)
        if c is not None:
            out[k] = c
    return out


def _gguf_layer(store: st.ModelStore, digest: str,
                want_adapter: bool) -> tuple[JsonObject, Any]:
    d = validate_digest(digest)
    path = store.blob_path(d)
    if not path.is_file():
        raise BadRequest(f'blob "{d}" not found')
    try:
        g = read_gguf(path)
    except GGUFError as e:
        if e.reason == "bad magic" or e.reason == "file too small":
            raise BadRequest("supplied file was not in GGUF format") from None
        raise BadRequest(str(e)) from None
    kind = g.general_type
    if want_adapter or kind == "adapter":
        mt = st.MEDIA_ADAPTER
    elif kind in ("projector", "mmproj") or g.architecture == "clip":
        mt = st.MEDIA_PROJECTOR
    else:
        mt = st.MEDIA_MODEL
    return {"mediaType": mt, "digest": d, "size": path.stat().st_size}, g


def _text_layer(media: str, text: str, pending: dict[str, bytes]) -> JsonObject:
    """A text layer, its bytes kept in `pending` until every check has passed (a refused
    create writes nothing)."""
    data = text.encode()
    d = "sha256:" + hashlib.sha256(data).hexdigest()
    pending[d] = data
    return {"mediaType": media, "digest": d, "size": len(data)}


def _json_layer(media: str, obj: Any, pending: dict[str, bytes]) -> JsonObject:
    data = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    return _text_layer(media, data, pending)


def check_text_layers(layers: Sequence[Mapping[str, Any]], budget: int) -> None:
    """Text layers the store would refuse to read back (ModelStore reads them all within one
    `budget`, each within MAX_TEXT_LAYER_BYTES) are refused here: such a model could never
    be shown or run."""
    left = budget
    for layer in layers:
        if layer.get("mediaType") not in st.TEXT_MEDIA:
            continue
        size = int(layer.get("size") or 0)
        if left <= 0 or size > min(left, st.MAX_TEXT_LAYER_BYTES):
            kind = str(layer["mediaType"]).removeprefix(st.MEDIA_PREFIX)
            raise LimitExceeded(
                f"{kind} too large: a model's text layers (template, system, license, "
                f"parameters, messages) may hold {budget} bytes in all and "
                f"{st.MAX_TEXT_LAYER_BYTES} each (OLLAMAPY_MAX_TEXT_LAYER_BYTES)")
        left -= size


def create_model(store: st.ModelStore, name: ModelName, spec: CreateSpec, progress: Progress,
                 *, noprune: bool = False) -> None:
    """Build and write the manifest for `name`; errors are OllamaError subclasses."""
    for key in [*spec.files, *spec.adapters]:
        if not valid_rel_path(key):
            raise BadRequest("file path must be relative")
    if len(spec.adapters) > 1:
        raise BadRequest("only one adapter is currently supported")
    params_req = check_params(spec.parameters or {})

    if spec.template:  # refused here as Ollama does: stored, it would fail every request
        gotemplate.parse_or_reject(spec.template)

    layers: list[JsonObject] = []
    new: set[str] = set()
    pending: dict[str, bytes] = {}
    config: JsonObject = {}
    base_params: JsonObject = {}
    with store.lock:
        if spec.files:
            model_g = None
            for _fname, digest in spec.files.items():
                if not digest:
                    raise BadRequest("invalid digest format")
                layer, g = _gguf_layer(store, digest, want_adapter=False)
                layers.append(layer)
                if layer["mediaType"] == st.MEDIA_MODEL and model_g is None:
                    model_g = g
            if model_g is None:
                raise BadRequest("no model file found in 'files'")
            arch = model_g.architecture
            config = {"model_format": "gguf", "model_family": arch, "model_families": [arch],
                      "model_type": human_number(model_g.parameter_count),
                      "file_type": model_g.file_type}
        elif spec.from_:
            base_name = ModelName.try_parse(spec.from_)
            if base_name is None:
                raise BadRequest("invalid model name")
            try:
                base = store.resolve(base_name)
                base_manifest = store.read_manifest(base_name)
            except NotFound:
                raise NotFound(f"model '{spec.from_}' not found") from None
            for layer in base_manifest.get("layers", []):
                layer = dict(layer)
                if layer.get("mediaType") in (st.MEDIA_MODEL, st.MEDIA_PROJECTOR,
                                              st.MEDIA_ADAPTER) and not layer.get("from"):
                    layer["from"] = base.short_name
                layers.append(layer)
            config = {k: v for k, v in base.config.items()
                      if k not in ("architecture", "os", "rootfs")}
            base_params = dict(base.params)
        else:
            raise BadRequest("neither 'from' or 'files' was specified")

        for _fname, digest in spec.adapters.items():
            if not digest:
                raise BadRequest("invalid digest format")
            layer, _g = _gguf_layer(store, digest, want_adapter=True)
            layers = [x for x in layers if x["mediaType"] != st.MEDIA_ADAPTER] + [layer]
        if spec.files:
            # Reported after the checks so that bad input is a real 4xx, not a stream error.
            progress({"status": "parsing GGUF"})

        def replace(media: tuple[str, ...], new: list[JsonObject]) -> None:
            nonlocal layers
            layers = [x for x in layers if x.get("mediaType") not in media] + new

        if spec.template is not None:
            replace((st.MEDIA_TEMPLATE, st.MEDIA_PROMPT),
                    [_text_layer(st.MEDIA_TEMPLATE, spec.template, pending)] if spec.template
                    else [])
        if spec.system is not None:
            replace((st.MEDIA_SYSTEM,),
                    [_text_layer(st.MEDIA_SYSTEM, spec.system, pending)] if spec.system else [])
        if spec.license is not None:
            replace((st.MEDIA_LICENSE,),
                    [_text_layer(st.MEDIA_LICENSE, t, pending) for t in spec.license if t])
        if spec.parameters is not None or base_params:
            merged = {**base_params, **params_req}
            replace((st.MEDIA_PARAMS,),
                    [_json_layer(st.MEDIA_PARAMS, merged, pending)] if merged else [])
        if spec.messages:
            msgs = [{"role": m.get("role", ""), "content": m.get("content", "")}
                    for m in spec.messages]
            replace((st.MEDIA_MESSAGES,), [_json_layer(st.MEDIA_MESSAGES, msgs, pending)])
        check_text_layers(layers, st.text_budget())
        for digest, data in pending.items():
            if store.write_blob(data)[1]:
                new.add(digest)

        for layer in layers:
            if not store.has_blob(layer["digest"]):
                raise StoreError(f'layer "{layer["digest"]}" is missing from the store')
            verb = "creating new" if layer["digest"] in new else "using existing"
            progress({"status": f"{verb} layer {layer['digest']}"})

        for key in ("renderer", "parser", "requires"):
            value = getattr(spec, key)
            if value:
                config[key] = value
        if spec.quantized is not None:
            src_digest, new_digest, ftype = spec.quantized
            size = store.blob_path(new_digest).stat().st_size
            layers = [{"mediaType": st.MEDIA_MODEL, "digest": new_digest, "size": size}
                      if x.get("digest") == src_digest and x.get("mediaType") == st.MEDIA_MODEL
                      else x
                      for x in layers]
            new.add(new_digest)
            config["file_type"] = ftype

        config.update({"architecture": _goarch(), "os": "linux",
                       "rootfs": {"type": "layers",
                                  "diff_ids": [x["digest"] for x in layers]}})
        cfg_bytes = json.dumps(config, separators=(",", ":"), ensure_ascii=False).encode()
        cfg_digest, created = store.write_blob(cfg_bytes)
        progress({"status": f"{'creating new' if created else 'using existing'} layer "
                            f"{cfg_digest}"})
        manifest = {"schemaVersion": 2, "mediaType": st.MEDIA_MANIFEST,
                    "config": {"mediaType": st.MEDIA_CONFIG, "digest": cfg_digest,
                               "size": len(cfg_bytes)},
                    "layers": layers}
        progress({"status": "writing manifest"})
        old: set[str] = set()
        target = store.stored_name(name)
        try:
            old = store.layer_digests(store.read_manifest(target))
        except NotFound:
            pass
        except OllamaError:
            old = set()
        store.write_manifest(target, st.manifest_json(manifest))
        if old and not noprune:
            store.remove_unreferenced(old)
    progress({"status": "success"})


def _goarch() -> str:
    m = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(m, m or "amd64")


