"""`/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`: OpenAI requests translated into
the engine's (via the native wire types, api/openai.py), its events re-framed as OpenAI JSON /
SSE (server/openai_chunks.py over the native chunks). Errors use the OpenAI envelope
(server/middleware.py does that for /v1/*)."""

from __future__ import annotations

import base64
import struct
import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from ollamapy.api.decode import decode_request
from ollamapy.api.openai import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    StreamOptions,
    chat_id,
    completion_id,
    embedding_inputs,
    to_chat,
    to_generate,
)
from ollamapy.errors import BadRequest
from ollamapy.inference.embed import shape_vectors
from ollamapy.inference.events import Event
from ollamapy.inference.jsontypes import JsonObject
from ollamapy.keepalive import parse_keep_alive
from ollamapy.server import metered, wire
from ollamapy.server.native_chunks import NativeChunks
from ollamapy.server.openai_chunks import (
    OpenAIChatStream,
    OpenAICompletionStream,
    openai_chat_response,
    openai_completion_response,
)
from ollamapy.server.routes.inference import (
    aggregate,
    chat_request,
    generate_request,
)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    start = time.monotonic_ns()
    oreq = await decode_request(ChatCompletionRequest, request)
    ireq = chat_request(to_chat(oreq), start)
    chunks = NativeChunks(oreq.model, chat=True, top_logprobs=ireq.top_logprobs)
    return await reply(request, oreq.model, oreq.stream, oreq.stream_options,
                       metered.run(request, ireq), chunks, chat_id(),
                       openai_chat_response, OpenAIChatStream)


async def completions(request: web.Request) -> web.StreamResponse:
    start = time.monotonic_ns()
    oreq = await decode_request(CompletionRequest, request)
    req = to_generate(oreq)
    if not req.model:
        raise BadRequest("model is required")
    ireq = generate_request(req, start, context=False)  # OpenAI has no context
    chunks = NativeChunks(oreq.model, chat=False, top_logprobs=ireq.top_logprobs)
    return await reply(request, oreq.model, oreq.stream, oreq.stream_options,
                       metered.run(request, ireq), chunks, completion_id(),
                       openai_completion_response, OpenAICompletionStream)


async def reply(request: web.Request, model: str, stream: bool,
                stream_options: StreamOptions | None, events: AsyncIterator[Event],
                chunks: NativeChunks, cid: str,
                whole: Callable[[str, str, JsonObject], JsonObject],
                stream_cls: type[OpenAIChatStream] | type[OpenAICompletionStream]
                ) -> web.StreamResponse:
    """One OpenAI answer from the engine's events: aggregated JSON, or SSE chunks + `[DONE]`."""
    if not stream:
        async def body() -> web.StreamResponse:
            return wire.json_response(whole(cid, model, await aggregate(chunks, events)))
        return await wire.until_disconnect(request, body())
    conv = stream_cls(cid, model, bool(stream_options and stream_options.include_usage),
                      chunks.top_logprobs)
    convert, sse = conv.convert, wire.sse

    def encode(ev: Event) -> bytes:
        return b"".join([sse(o) for o in convert(ev)])

    return await wire.until_disconnect(request, wire.write_stream(
        request, events, encode=encode, content_type=wire.EVENT_STREAM, error=wire.sse_error,
        tail=wire.SSE_DONE, sse_headers=True))


def b64_floats(vec: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode()


async def embeddings(request: web.Request) -> web.StreamResponse:
    oreq = await decode_request(EmbeddingRequest, request)
    if oreq.encoding_format not in (None, "float", "base64"):
        raise BadRequest(f"Invalid value for 'encoding_format' = {oreq.encoding_format}. "
                         "Supported values: ['float', 'base64'].")
    if not oreq.model:
        raise BadRequest("model is required")
    inputs = embedding_inputs(oreq)

    async def work() -> web.StreamResponse:
        res = await metered.embed(request, oreq.model, inputs,
                                  keep_alive=parse_keep_alive(None))

        def build() -> JsonObject:
            vecs = shape_vectors(res.vectors, oreq.dimensions)
            data = [{"object": "embedding", "index": i,
                     "embedding": b64_floats(v) if oreq.encoding_format == "base64" else v}
                    for i, v in enumerate(vecs)]
            return {"object": "list", "data": data, "model": oreq.model,
                    "usage": {"prompt_tokens": res.prompt_tokens,
                              "total_tokens": res.prompt_tokens}}

        return await wire.json_response_built(build)

    return await wire.until_disconnect(request, work())


def setup(app: web.Application) -> None:
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/v1/embeddings", embeddings)
