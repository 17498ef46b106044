"""Embeddings: fit each input to the runner's context, embed them in bounded batches, shape the
vectors (L2 normalisation, `dimensions` cut). The request path is in engine.embed."""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from ollamapy.errors import BadRequest, OllamaError, RunnerError
from ollamapy.runner.client import RunnerClient

T = TypeVar("T")
R = TypeVar("R")

EMBED_BATCH = 64  # inputs per upstream /v1/embeddings request
MAX_EMBED_REQUESTS = 4  # upstream embedding requests in flight per call (also <= slots)
MAX_TOKENIZE_REQUESTS = 4  # upstream /tokenize requests in flight per call
_BATCH_RE = re.compile(r"current batch size: (\d+)")


@dataclass(slots=True)
class EmbedResult:
    vectors: list[list[float]]
    prompt_tokens: int
    load_duration: float


def normalize(vec: list[float]) -> list[float]:
    """L2-normalise (norm floor 1e-12); NaN/Inf is an error, as in Ollama."""
    s = math.fsum(x * x for x in vec)
    if not math.isfinite(s):
        raise RunnerError("embedding contains NaN or Inf values")
    norm = max(math.sqrt(s), 1e-12)
    return [x / norm for x in vec]


def shape_vectors(vecs: list[list[float]], dimensions: int | None) -> list[list[float]]:
    out = []
    for v in vecs:
        v = normalize(v)
        if dimensions is not None and 0 < dimensions < len(v):
            v = normalize(v[:dimensions])
        out.append(v)
    return out


def batch_limit(message: str) -> int | None:
    """llama-server's "input (N tokens) is too large to process ... (current batch size: B)"."""
    m = _BATCH_RE.search(message)
    return int(m.group(1)) if m else None


def batches(items: Sequence[T], size: int) -> list[Sequence[T]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


async def bounded_map(fn: Callable[[T], Awaitable[R]], items: Sequence[T], limit: int
                      ) -> list[R]:
    """fn over items with at most `limit` running at once (results in order). The first error
    cancels the rest."""
    out: list[R | None] = [None] * len(items)
    it = iter(range(len(items)))

    async def worker() -> None:
        for i in it:
            out[i] = await fn(items[i])

    workers = [asyncio.ensure_future(worker()) for _ in range(max(1, min(limit, len(items))))]
    try:
        await asyncio.gather(*workers)
    except BaseException:
        for w in workers:
            w.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        raise
    return out  # type: ignore[return-value]  # every slot was filled


def _cheap_fits(text: str, limit: int) -> bool:
    # A token covers at least one byte, so the byte length bounds the token count.
    return len(text.encode()) <= limit


async def fit_inputs(client: RunnerClient, inputs: Sequence[str], limit: int,
                     truncate: bool) -> list[str]:
    """Inputs cut to `limit` tokens (or refused when not `truncate`). Only inputs that might be
    too long are tokenized, with bounded concurrency."""
    async def fit(text: str) -> str:
        if _cheap_fits(text, limit):
            return text
        toks = await client.tokenize(text)
        if len(toks) <= limit:
            return text
        if not truncate:
            raise BadRequest("the input length exceeds the context length")
        return await client.detokenize(toks[:limit])

    if all(_cheap_fits(t, limit) for t in inputs):
        return list(inputs)
    return await bounded_map(fit, inputs, MAX_TOKENIZE_REQUESTS)


async def embed_all(client: RunnerClient, inputs: Sequence[str], limit: int, truncate: bool,
                    normalize_out: int, slots: int) -> tuple[list[list[float]], int]:
    """Every input embedded, in batches of EMBED_BATCH, at most min(slots, MAX_EMBED_REQUESTS)
    requests at once. A batch the runner refuses as larger than its batch size is refitted
    to that size and retried once (Ollama does the same)."""
    fitted = await fit_inputs(client, inputs, limit, truncate)

    async def one(batch: Sequence[str]) -> tuple[list[list[float]], int]:
        try:
            return await client.embeddings(batch, normalize=normalize_out)
        except OllamaError as e:
            size = batch_limit(e.message)
            if size is None or not truncate or size - 2 >= limit:
                raise
            refit = await fit_inputs(client, batch, size - 2, truncate)
            return await client.embeddings(refit, normalize=normalize_out)

    parts = await bounded_map(one, batches(fitted, EMBED_BATCH),
                              max(1, min(slots, MAX_EMBED_REQUESTS)))
    vecs = [v for p, _ in parts for v in p]
    return vecs, sum(n for _, n in parts)
