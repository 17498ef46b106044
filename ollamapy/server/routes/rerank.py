"""`POST /v1/rerank` (not in Ollama: ollama#3368; llama-server's reranking, Jina/Cohere shape)
for models whose GGUF is a reranker. Errors in the OpenAI envelope, as every /v1 route."""

from __future__ import annotations

from aiohttp import web

from ollamapy.api.decode import decode_request
from ollamapy.api.rerank import (
    MAX_DOCUMENTS,
    RerankDocument,
    RerankRequest,
    RerankResponse,
    RerankResult,
    RerankUsage,
)
from ollamapy.errors import BadRequest
from ollamapy.keepalive import parse_keep_alive
from ollamapy.server import metered, wire


def check(req: RerankRequest) -> None:
    if not req.model:
        raise BadRequest("model is required")
    if not req.query:
        raise BadRequest("query is required")
    if not req.documents:
        raise BadRequest("documents must be a non-empty list of strings")
    if len(req.documents) > MAX_DOCUMENTS:
        raise BadRequest(f"too many documents: {len(req.documents)} (at most {MAX_DOCUMENTS})")
    if req.top_n is not None and req.top_n < 1:
        raise BadRequest("top_n must be a positive integer")


async def rerank(request: web.Request) -> web.StreamResponse:
    req = await decode_request(RerankRequest, request)
    check(req)

    async def work() -> web.StreamResponse:
        res = await metered.rerank(request, req.model, req.query, req.documents,
                                   top_n=req.top_n, keep_alive=parse_keep_alive(req.keep_alive))
        results = [RerankResult(index=i, relevance_score=score,
                                document=RerankDocument(text=req.documents[i])
                                if req.return_documents else None)
                   for i, score in res.ranked]
        body = RerankResponse(model=req.model, results=results,
                              usage=RerankUsage(prompt_tokens=res.prompt_tokens,
                                                total_tokens=res.prompt_tokens))
        return wire.json_response(body.model_dump(exclude_none=True))

    return await wire.until_disconnect(request, work())


def setup(app: web.Application) -> None:
    app.router.add_post("/v1/rerank", rerank)
