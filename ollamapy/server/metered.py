"""The engine as every route family calls it: per request, observed by /metrics and the access
log in this one place (native, OpenAI, Anthropic and Responses routes alike).

- the request's model label is the model the store resolved for it (the engine's own resolve,
  seen through `_LabellingStore`): bounded, never a name a client made up;
- `run` times the first generated token and counts the Done's tokens (metrics.event_watcher);
- `embed` and `rerank` count the prompt tokens of an embedding or rerank request.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncGenerator, Sequence

from aiohttp import web

from ollamapy.inference import engine
from ollamapy.inference.embed import EmbedResult
from ollamapy.inference.engine import RerankResult
from ollamapy.inference.events import Event
from ollamapy.inference.jsontypes import JsonObject
from ollamapy.inference.request import InferenceRequest
from ollamapy.inference.services import ModelResolver, Services
from ollamapy.server import keys, metrics
from ollamapy.store.model import Model


class _LabellingStore:
    """The app's store; each model it resolves becomes the request's metrics model label."""

    __slots__ = ("_loop_thread", "_request", "_store")

    def __init__(self, store: ModelResolver, request: web.Request) -> None:
        self._store = store
        self._request = request
        self._loop_thread = threading.get_ident()

    def resolve(self, name: str) -> Model:
        model = self._store.resolve(name)
        # a cache miss is resolved in a worker thread (inference.plan.prefetch): the label is
        # set by the resolve on the loop that follows it, never from another thread
        if threading.get_ident() == self._loop_thread:
            metrics.set_request_model(self._request, model)
        return model

    def cached(self, name: str) -> Model | None:
        return self._store.cached(name)


def services(request: web.Request) -> Services:
    """The engine's services for this request (the app's store and scheduler)."""
    app = request.app
    return Services(_LabellingStore(app[keys.STORE_KEY], request), app[keys.SCHEDULER_KEY])


def run(request: web.Request, req: InferenceRequest) -> AsyncGenerator[Event, None]:
    """`engine.run` for a generate or chat, its events observed on the way out."""
    return engine.run(services(request), req, watch=metrics.event_watcher(request))


async def rerank(request: web.Request, model: str, query: str, documents: Sequence[str], *,
                 top_n: int | None = None, keep_alive: float | None = None) -> RerankResult:
    """`engine.rerank`, its prompt tokens counted."""
    res = await engine.rerank(services(request), model, query, documents, top_n=top_n,
                              keep_alive=keep_alive)
    metrics.record_usage(request, res.prompt_tokens, 0)
    return res


async def embed(request: web.Request, model: str, inputs: Sequence[str], *,
                options: JsonObject | None = None, keep_alive: float | None = None,
                truncate: bool = True, not_found: str | None = None) -> EmbedResult:
    """`engine.embed`, its prompt tokens counted."""
    res = await engine.embed(services(request), model, inputs, options=options,
                             keep_alive=keep_alive, truncate=truncate, not_found=not_found)
    metrics.record_usage(request, res.prompt_tokens, 0)
    return res
