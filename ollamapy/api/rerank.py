"""`POST /v1/rerank` bodies (the Jina/Cohere shape llama-server also serves): a query, the
documents to score against it, the `top_n` best back with their index and relevance score."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from ollamapy.api.inference import Wire

MAX_DOCUMENTS = 1024


class RerankRequest(Wire):
    model: str = ""
    query: str = ""
    documents: list[str] = Field(default_factory=list)
    top_n: int | None = None
    return_documents: bool = False
    keep_alive: Any = None

    @field_validator("documents", mode="before")
    @classmethod
    def _texts(cls, v: Any) -> Any:
        """Cohere/Jina also take `{"text": ...}` objects."""
        if isinstance(v, list):
            return [d.get("text") if isinstance(d, dict) else d for d in v]
        return v


class RerankDocument(Wire):
    text: str


class RerankResult(Wire):
    index: int
    relevance_score: float
    document: RerankDocument | None = None


class RerankUsage(Wire):
    prompt_tokens: int
    total_tokens: int


class RerankResponse(Wire):
    model: str
    object: str = "list"
    results: list[RerankResult]
    usage: RerankUsage
