"""`/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`: OpenAI requests translated into
native ones (api/openai.py), run through the same chunk producers as `/api/*`, and re-framed as
OpenAI JSON / SSE. Errors use the OpenAI envelope (server/middleware.py does that for /v1/*)."""

from __future__ import annotations

import base64
import json
import struct
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from ollamapy.api.decode import decode
from ollamapy.api.openai import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    chat_id,
    completion_id,
    embedding_inputs,
    to_chat,
    to_generate,
)
from ollamapy.errors import BadRequest, OllamaError
from ollamapy.keepalive import parse_keep_alive
from ollamapy.relay import (
    OpenAIChatStream,
    OpenAICompletionStream,
    openai_chat_response,
    openai_completion_response,
    sse,
)
from ollamapy.server import metrics
from ollamapy.server.middleware import openai_error_body
from ollamapy.server.routes.inference import (
    aggregate,
    chat_chunks,
    embed_inputs,
    generate_chunks,
    merged_options,
    plan_chat,
    plan_generate,
    resolve_model,
    shape_vectors,
    until_disconnect,
    write_stream,
)

DONE = b"data: [DONE]\n\n"


def sse_error(e: OllamaError) -> bytes:
    """A mid-stream error in the OpenAI envelope."""
    return sse(openai_error_body(e.status, e.message))


async def chat_completions(request: web.Request) -> web.StreamResponse:
    start = time.monotonic_ns()
    oreq = decode(ChatCompletionRequest, await request.read())
    req = to_chat(oreq)
    plan = plan_chat(request.app, req, start)
    if plan is not None:
        metrics.set_request_model(request, plan.model)
    if plan is None:  # keep_alive is not an OpenAI field; cannot happen, kept for safety
        raise BadRequest("[] is too short - 'messages'")
    return await reply(request, oreq, chat_chunks(request.app, plan, req), chat_id(),
                       openai_chat_response, OpenAIChatStream)


async def completions(request: web.Request) -> web.StreamResponse:
    start = time.monotonic_ns()
    oreq = decode(CompletionRequest, await request.read())
    req = to_generate(oreq)
    if not req.model:
        raise BadRequest("model is required")
    plan = plan_generate(request.app, req, start)
    if plan is not None:
        metrics.set_request_model(request, plan.model)
    if plan is None:
        raise BadRequest("prompt is required")
    chunks = generate_chunks(request.app, plan, req, context=False)  # OpenAI has no context
    return await reply(request, oreq, chunks, completion_id(), openai_completion_response,
                       OpenAICompletionStream)


async def reply(request: web.Request, oreq: Any, chunks: Any, cid: str,
                whole: Callable[[str, str, dict[str, Any]], dict[str, Any]],
                stream_cls: type[OpenAIChatStream] | type[OpenAICompletionStream]
                ) -> web.StreamResponse:
    """One OpenAI answer from native chunks: aggregated JSON, or SSE chunks + `[DONE]`."""
    chunks = metrics.observe_chunks(request, chunks)
    if not oreq.stream:
        async def body() -> web.StreamResponse:
            return web.json_response(whole(cid, oreq.model, await aggregate(chunks)))
        return await until_disconnect(request, body())
    conv = stream_cls(cid, oreq.model, bool(oreq.stream_options and
                                            oreq.stream_options.include_usage))

    def encode(ch: dict[str, Any]) -> bytes:
        return b"".join(sse(c) for c in conv.convert(ch))

    return await until_disconnect(request, write_stream(
        request, chunks, encode=encode, content_type="text/event-stream", error=sse_error,
        tail=DONE, sse=True))


def b64_floats(vec: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode()


async def embeddings(request: web.Request) -> web.StreamResponse:
    oreq = decode(EmbeddingRequest, await request.read())
    if oreq.encoding_format not in (None, "float", "base64"):
        raise BadRequest(f"Invalid value for 'encoding_format' = {oreq.encoding_format}. "
                         "Supported values: ['float', 'base64'].")
    if not oreq.model:
        raise BadRequest("model is required")
    inputs = embedding_inputs(oreq)
    model = resolve_model(request.app, oreq.model)
    metrics.set_request_model(request, model)
    opts = merged_options(model, None)

    async def work() -> web.StreamResponse:
        res = await embed_inputs(request.app, model, inputs, opts, parse_keep_alive(None), True)
        metrics.record_usage(request, res.prompt_tokens, 0)
        vecs = shape_vectors(res.vectors, oreq.dimensions)
        data = [{"object": "embedding", "index": i,
                 "embedding": b64_floats(v) if oreq.encoding_format == "base64" else v}
                for i, v in enumerate(vecs)]
        body = {"object": "list", "data": data, "model": oreq.model,
                "usage": {"prompt_tokens": res.prompt_tokens, "total_tokens": res.prompt_tokens}}
        return web.Response(body=json.dumps(body).encode(), content_type="application/json")

    return await until_disconnect(request, work())


def setup(app: web.Application) -> None:
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/v1/embeddings", embeddings)
