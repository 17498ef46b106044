"""Everything decided about a request before a runner is touched: the model, its capabilities,
merged options, format and think. Pure (the store lookup aside); errors in Ollama's words."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from ollamapy import options as ollama_options
from ollamapy.api.inference import Think
from ollamapy.errors import BadRequest, NotFound, OllamaError
from ollamapy.inference import sampling
from ollamapy.inference.jsontypes import JsonObject
from ollamapy.inference.request import InferenceRequest
from ollamapy.inference.services import ModelResolver
from ollamapy.store.model import Model
from ollamapy.store.names import ModelName


def resolve_model(store: ModelResolver, name: str, *, not_found: str | None = None) -> Model:
    """Name -> Model through the store (which caches it while the manifest is unchanged)."""
    ModelName.parse(name)  # invalid -> BadRequest("invalid model name")
    try:
        return store.resolve(name)
    except NotFound:
        raise NotFound(not_found or f"model '{name}' not found") from None


async def prefetch(store: ModelResolver, name: str) -> None:
    """Resolve `name` in a worker thread unless the store has it cached: a cache miss reads
    the manifest's text layers (up to 16 MiB), the GGUF header and parses the template, which a
    hostile model makes slow; the planning that follows then hits the cache on the loop.
    Errors are left to `resolve_model`, which words them."""
    if store.cached(name) is not None:  # the usual case: one stat, and a valid name
        return
    try:
        ModelName.parse(name)
        await asyncio.to_thread(store.resolve, name)
    except OllamaError:
        pass


def has_cap(model: Model, cap: str) -> bool:
    caps = model.capabilities or ("completion",)
    return cap in caps


def check_think(model: Model, req_model: str, think: Think) -> Think:
    """Thinking-capable models think by default; asking a non-thinking model to think is 400."""
    if has_cap(model, "thinking"):
        return True if think is None else think
    if think:
        raise BadRequest(f'"{req_model}" does not support thinking')
    return think


def supports_context_shift(model: Model) -> bool:
    """Ollama's supportsContextShift: deepseek2-family models are never context-shifted."""
    fams = model.config.get("model_families")
    return model.config.get("model_family") != "deepseek2" and not (
        isinstance(fams, list) and "deepseek2" in fams)


def merged_options(model: Model, opts: JsonObject | None) -> JsonObject:
    params = ollama_options.validate(model.params) if model.params else {}
    return ollama_options.merge(params, ollama_options.validate(opts))


@dataclass(slots=True)
class Plan:
    """Everything decided before the runner is touched."""

    model: Model
    req_model: str
    options: JsonObject
    keep_alive: float | None
    fmt: JsonObject
    think: Think
    start_ns: int
    truncate: bool
    shift: bool
    logprobs: bool = False
    top_logprobs: int = 0


def make_plan(model: Model, req: InferenceRequest, start_ns: int) -> Plan:
    """The fields generate and chat share, once the request-specific checks have passed."""
    return Plan(model, req.model, merged_options(model, req.options), req.keep_alive,
                sampling.format_fields(req.format), check_think(model, req.model, req.think),
                start_ns, req.truncate,
                req.shift if req.shift is not None else supports_context_shift(model),
                req.logprobs, req.top_logprobs)


def is_unload(req: InferenceRequest) -> bool:
    """The unload shortcut (`ollama stop`): keep_alive 0 and nothing to run. It unloads the
    model under every other user, so the routes treat it as management (admin scope)."""
    if req.keep_alive != 0:
        return False
    if req.messages is not None:
        return not req.messages
    return not req.prompt and not req.images


def plan_generate(store: ModelResolver, req: InferenceRequest, start_ns: int) -> Plan | None:
    """Validate a generate request. None = the unload shortcut applies."""
    if not req.model:
        raise NotFound("model '' not found")
    if req.raw and (req.template or req.system or req.context):
        raise BadRequest("raw mode does not support template, system, or context")
    model = resolve_model(store, req.model)
    if is_unload(req):
        return None
    if not has_cap(model, "completion"):
        raise BadRequest(f'"{req.model}" does not support generate')
    if req.suffix and not has_cap(model, "insert"):
        raise BadRequest(f"{model.name} does not support insert")
    return make_plan(model, req, start_ns)


def plan_chat(store: ModelResolver, req: InferenceRequest, start_ns: int) -> Plan | None:
    if not req.model:
        raise BadRequest("model is required")
    model = resolve_model(store, req.model)
    if is_unload(req):
        return None
    if not has_cap(model, "completion"):
        raise BadRequest(f'"{req.model}" does not support chat')
    if req.tools and not has_cap(model, "tools"):
        raise BadRequest(f"{model.name} does not support tools")
    return make_plan(model, req, start_ns)
