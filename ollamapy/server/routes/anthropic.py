"""`POST /v1/messages` and `POST /v1/messages/count_tokens`: Anthropic's Messages API over the
engine (translate/anthropic.py does every mapping; this is the HTTP shell). A query string
(Claude Code sends `?beta=true`) is ignored. Errors, here and from the middlewares, use
Anthropic's envelope (`api.anthropic.anthropic_error_body`, dispatched in server/middleware.py).
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from ollamapy.api.anthropic import CountTokensRequest, MessagesRequest
from ollamapy.api.decode import decode_request
from ollamapy.errors import OllamaError
from ollamapy.inference import engine
from ollamapy.inference.events import Event
from ollamapy.inference.plan import prefetch
from ollamapy.server import metered
from ollamapy.server.routes.agent_shell import collect, reworded
from ollamapy.server.wire import EVENT_STREAM, json_response, until_disconnect, write_stream
from ollamapy.translate import anthropic as tr
from ollamapy.translate.forced import forced_call


async def messages(request: web.Request) -> web.StreamResponse:
    areq = await decode_request(MessagesRequest, request)
    ireq = tr.to_inference(areq)
    if ireq.think:
        try:
            store = metered.services(request).store
            await prefetch(store, ireq.model)
            model = store.resolve(ireq.model)
            ireq.think = tr.relax_think(ireq.think, model.capabilities)
        except OllamaError:
            pass  # an unknown or invalid model: the engine reports it in its own words
    mid = tr.message_id()
    events = reworded(metered.run(request, ireq), tr.too_long)
    if tr.forced(areq) and ireq.tools:  # tool_choice any/tool: a forced call
        events = forced_call(events, [t.function.name for t in ireq.tools])
    if not areq.stream:
        async def whole() -> web.StreamResponse:
            turn = await collect(events)
            return json_response(tr.message_response(mid, areq.model, turn,
                                                     areq.stop_sequences))
        return await until_disconnect(request, whole())
    # The estimate serializes every tool input and schema: O(body), off the loop (~0.4 s for a
    # 100 MB body under the 1 GiB cap).
    estimate = await asyncio.to_thread(tr.estimate_tokens, areq)
    conv = tr.MessageStream(mid, areq.model, areq.stop_sequences, estimate)

    def encode(ev: Event) -> bytes:
        return tr.sse_bytes(conv.feed(ev))

    def error(e: OllamaError) -> bytes:
        return tr.sse_bytes(conv.error(e))

    return await until_disconnect(request, write_stream(
        request, events, encode=encode, content_type=EVENT_STREAM, error=error,
        sse_headers=True))


async def count_tokens(request: web.Request) -> web.StreamResponse:
    """The prompt's real token count: rendered with the model's template and tools and
    tokenized by its runner (the engine's `count_tokens`), not a length estimate."""
    creq = await decode_request(CountTokensRequest, request)
    ireq = tr.count_request(creq)

    async def work() -> web.StreamResponse:
        n = await engine.count_tokens(metered.services(request), ireq)
        return json_response({"input_tokens": n})

    return await until_disconnect(request, work())


def setup(app: web.Application) -> None:
    app.router.add_post("/v1/messages", messages)
    app.router.add_post("/v1/messages/count_tokens", count_tokens)
