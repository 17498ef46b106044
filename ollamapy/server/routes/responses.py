"""`POST /v1/responses`: OpenAI's Responses API over the engine (translate/responses.py does
every mapping; this is the HTTP shell). Stateless: `previous_response_id` is a 400, nothing is
stored. Errors use the OpenAI envelope (server/middleware.py does that for every /v1/* path);
a failure after the stream started is a `response.failed` event."""

from __future__ import annotations

import time

from aiohttp import web

from ollamapy.api.decode import decode_request
from ollamapy.api.responses import ResponsesRequest
from ollamapy.errors import OllamaError
from ollamapy.inference.events import Event
from ollamapy.server import metered
from ollamapy.server.routes.agent_shell import collect, reworded
from ollamapy.server.wire import EVENT_STREAM, json_response, until_disconnect, write_stream
from ollamapy.translate import responses as tr
from ollamapy.translate.forced import forced_call


async def responses(request: web.Request) -> web.StreamResponse:
    rreq = await decode_request(ResponsesRequest, request)
    ireq = tr.to_inference(rreq)
    rid, created = tr.response_id(), int(time.time())
    events = reworded(metered.run(request, ireq), tr.too_long)
    if tr.forced(rreq) and ireq.tools:  # tool_choice required/named: a forced call
        events = forced_call(events, [t.function.name for t in ireq.tools])
    if not rreq.stream:
        async def whole() -> web.StreamResponse:
            turn = await collect(events)
            return json_response(tr.response_from_turn(rid, rreq, created, turn))
        return await until_disconnect(request, whole())
    conv = tr.ResponseStream(rid, rreq, created)

    def encode(ev: Event) -> bytes:
        return tr.sse_bytes(conv.feed(ev))

    def error(e: OllamaError) -> bytes:
        return tr.sse_bytes(conv.error(e))

    return await until_disconnect(request, write_stream(
        request, events, encode=encode, content_type=EVENT_STREAM, error=error,
        sse_headers=True))


def setup(app: web.Application) -> None:
    app.router.add_post("/v1/responses", responses)
