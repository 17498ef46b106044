"""`/api/generate`, `/api/chat`, `/api/embed`, `/api/embeddings`: the native API as a thin
translator over the engine (ollamapy/inference/): wire request -> InferenceRequest, events ->
Ollama chunks (server/native_chunks.py) -> NDJSON or one JSON answer (server/wire.py).

Upstream is always streamed; a client that goes away cancels the handler, which closes the
engine's stream and with it the upstream response, so llama-server frees the slot at once.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from ollamapy.api.decode import decode_request
from ollamapy.api.inference import (
    ChatRequest,
    EmbeddingsRequest,
    EmbedRequest,
    GenerateRequest,
    InferenceBase,
)
from ollamapy.errors import BadRequest, RunnerError
from ollamapy.inference.embed import shape_vectors
from ollamapy.inference.events import Done, Event, close_stream
from ollamapy.inference.jsontypes import JsonObject
from ollamapy.inference.plan import is_unload
from ollamapy.inference.request import InferenceRequest
from ollamapy.keepalive import parse_keep_alive
from ollamapy.server import metered, security, wire
from ollamapy.server.native_chunks import Aggregate, NativeChunks

# ------------------------------------------------------------------ wire -> InferenceRequest


def _common(req: InferenceBase, start_ns: int) -> JsonObject:
    return {"model": req.model, "format": req.format, "think": req.think,
            "options": req.options or {}, "keep_alive": parse_keep_alive(req.keep_alive),
            "truncate": req.truncate is not False, "shift": req.shift,
            "logprobs": bool(req.logprobs), "top_logprobs": req.top_logprobs or 0,
            "debug_render_only": req.debug_render_only, "start_ns": start_ns}


def generate_request(req: GenerateRequest, start_ns: int, *, context: bool = True
                     ) -> InferenceRequest:
    """`context` False: the answer never returns token ids (/v1/completions), so the engine
    skips the extra /tokenize for them."""
    return InferenceRequest(prompt=req.prompt, suffix=req.suffix, system=req.system,
                            template=req.template, context=req.context, raw=req.raw,
                            images=list(req.images or []), want_context=context and not req.raw,
                            **_common(req, start_ns))


def chat_request(req: ChatRequest, start_ns: int) -> InferenceRequest:
    return InferenceRequest(messages=list(req.messages), tools=req.tools or None,
                            **_common(req, start_ns))


# ------------------------------------------------------------------ events -> wire


async def aggregate(chunks: NativeChunks, events: AsyncIterator[Event]) -> JsonObject:
    """A non-streaming answer: every chunk folded into one (upstream is still streamed)."""
    agg = Aggregate()
    try:
        async for ev in events:
            c = chunks.chunk(ev)
            if c is not None:
                agg.add(c)
    finally:
        await close_stream(events)
    if agg.last is None:
        raise RunnerError("no response from llama runner")
    return agg.result()


def _unload_reply(chunks: NativeChunks) -> Any:
    def whole(ev: Event) -> web.StreamResponse | None:
        if isinstance(ev, Done) and ev.done_reason == "unload":
            return wire.json_response(chunks.done(ev))
        return None
    return whole


async def respond(request: web.Request, events: AsyncIterator[Event], chunks: NativeChunks,
                  stream: bool) -> web.StreamResponse:
    if not stream:
        return wire.json_response(await aggregate(chunks, events))
    chunk = chunks.chunk

    def encode(ev: Event) -> bytes:
        c = chunk(ev)
        return wire.ndjson(c) if c is not None else b""

    return await wire.write_stream(request, events, encode=encode, content_type=wire.NDJSON,
                                   error=wire.ndjson_error, whole=_unload_reply(chunks))


# ------------------------------------------------------------------ handlers


async def generate(request: web.Request) -> web.StreamResponse:
    start = time.monotonic_ns()
    req = await decode_request(GenerateRequest, request)
    ireq = generate_request(req, start)
    if is_unload(ireq):
        security.require_scope(request, "admin", "stopping a model")
    chunks = NativeChunks(req.model, chat=False, top_logprobs=ireq.top_logprobs)
    return await wire.until_disconnect(request, respond(
        request, metered.run(request, ireq), chunks, req.stream is not False))


async def chat(request: web.Request) -> web.StreamResponse:
    start = time.monotonic_ns()
    req = await decode_request(ChatRequest, request)
    ireq = chat_request(req, start)
    if is_unload(ireq):
        security.require_scope(request, "admin", "stopping a model")
    chunks = NativeChunks(req.model, chat=True, top_logprobs=ireq.top_logprobs)
    return await wire.until_disconnect(request, respond(
        request, metered.run(request, ireq), chunks, req.stream is not False))


async def embed(request: web.Request) -> web.StreamResponse:
    start = time.monotonic_ns()
    req = await decode_request(EmbedRequest, request)
    if not req.model:
        raise BadRequest("model is required")
    inputs = req.inputs()
    if req.dimensions is not None and req.dimensions < 0:
        raise BadRequest("dimensions must be a positive integer")
    keep_alive = parse_keep_alive(req.keep_alive)

    async def work() -> web.StreamResponse:
        res = await metered.embed(request, req.model, inputs,
                                  options=req.options, keep_alive=keep_alive,
                                  truncate=req.truncate is not False)
        total = time.monotonic_ns() - start

        def build() -> JsonObject:
            body: JsonObject = {"model": req.model,
                                "embeddings": shape_vectors(res.vectors, req.dimensions)}
            if inputs:
                body["total_duration"] = total
                body["load_duration"] = int(res.load_duration * 1e9)
                body["prompt_eval_count"] = res.prompt_tokens
            return body

        return await wire.json_response_built(build)

    return await wire.until_disconnect(request, work())


async def embeddings(request: web.Request) -> web.StreamResponse:
    req = await decode_request(EmbeddingsRequest, request)
    if not req.model:
        raise BadRequest("model is required")
    keep_alive = parse_keep_alive(req.keep_alive)

    async def work() -> web.StreamResponse:
        res = await metered.embed(
            request, req.model, [req.prompt] if req.prompt else [],
            options=req.options, keep_alive=keep_alive,
            not_found=f'model "{req.model}" not found, try pulling it first')
        return wire.json_response({"embedding": res.vectors[0] if res.vectors else []})

    return await wire.until_disconnect(request, work())


def setup(app: web.Application) -> None:
    app.router.add_post("/api/generate", generate)
    app.router.add_post("/api/chat", chat)
    app.router.add_post("/api/embed", embed)
    app.router.add_post("/api/embeddings", embeddings)

