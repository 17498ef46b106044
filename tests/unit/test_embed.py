"""Embeddings through the engine against the fake runner: inputs are batched into a bounded
number of upstream requests with bounded concurrency (never one request per input)."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp import ClientSession

from ollamapy.errors import BadRequest
from ollamapy.inference import engine
from ollamapy.inference.embed import EMBED_BATCH, MAX_TOKENIZE_REQUESTS
from ollamapy.inference.services import Services
from tests.fake_runner import FakeRunner, FakeScheduler, FakeStore, fake_model, inference_app

SLOTS = 2


@pytest.fixture
async def rig() -> AsyncIterator[tuple[FakeRunner, FakeScheduler, FakeStore]]:
    up = await FakeRunner(delay=0.002).start()
    session = ClientSession()
    sched = FakeScheduler(session, {"gen": up.url, "emb": up.url},
                          props={"emb": {"total_slots": SLOTS}}, num_ctx={"emb": 64})
    store = FakeStore({"e:latest": fake_model("e:latest", caps=("embedding",))})
    try:
        yield up, sched, store
    finally:
        await session.close()
        await up.close()


async def test_twenty_thousand_inputs_are_batched(
        rig: tuple[FakeRunner, FakeScheduler, FakeStore]) -> None:
    up, sched, store = rig
    inputs = [f"word {i}" for i in range(20_000)]
    res = await engine.embed(Services(store, sched), "e", inputs)
    assert len(res.vectors) == 20_000
    assert res.vectors[0][0] == len(inputs[0]) + 1  # order kept across batches
    assert res.vectors[-1][0] == len(inputs[-1]) + 1
    assert up.requests["/v1/embeddings"] == math.ceil(20_000 / EMBED_BATCH)
    assert max(up.embed_batches) <= EMBED_BATCH
    assert up.max_active <= SLOTS  # never more requests in flight than the runner has slots
    assert up.requests["/tokenize"] == 0  # short inputs fit without asking the tokenizer
    assert res.prompt_tokens == 20_000 * 3  # BOS + 2 words each, as the runner counted


async def test_long_inputs_tokenized_with_bounded_concurrency(
        rig: tuple[FakeRunner, FakeScheduler, FakeStore]) -> None:
    up, sched, store = rig
    long = ["w " * 100 + str(i) for i in range(50)]
    res = await engine.embed(Services(store, sched), "e", long)
    assert len(res.vectors) == 50
    assert up.requests["/tokenize"] == 50 and up.requests["/detokenize"] == 50
    assert up.max_active <= MAX_TOKENIZE_REQUESTS
    with pytest.raises(BadRequest, match="input length exceeds the context length"):
        await engine.embed(Services(store, sched), "e", long, truncate=False)


async def test_embed_route_batches(rig: tuple[FakeRunner, FakeScheduler, FakeStore]) -> None:
    up, sched, store = rig
    async with inference_app(store, sched) as url, httpx.AsyncClient(timeout=60) as h:
        r = await h.post(url + "/api/embed", json={"model": "e",
                                                   "input": [f"x {i}" for i in range(1000)]})
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["embeddings"]) == 1000 and body["prompt_eval_count"] == 3000
        assert abs(sum(x * x for x in body["embeddings"][0]) - 1) < 1e-9
        assert up.requests["/v1/embeddings"] == math.ceil(1000 / EMBED_BATCH)
        r = await h.post(url + "/v1/embeddings", json={"model": "e", "input": ["a", "b"]})
        assert r.status_code == 200 and len(r.json()["data"]) == 2
        assert r.json()["usage"]["prompt_tokens"] == 4


async def test_embed_responses_are_built_off_the_loop(
        rig: tuple[FakeRunner, FakeScheduler, FakeStore],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Normalizing and encoding N vectors is O(request) (2,000 x 576 floats: ~1 s), so both
    embedding routes do it in a worker thread."""
    import threading

    from ollamapy.inference import embed as embed_mod
    from ollamapy.server.routes import inference as native_routes
    from ollamapy.server.routes import openai as openai_routes

    threads: list[threading.Thread] = []

    def spy(vecs, dimensions):  # type: ignore[no-untyped-def]
        threads.append(threading.current_thread())
        return embed_mod.shape_vectors(vecs, dimensions)

    monkeypatch.setattr(native_routes, "shape_vectors", spy)
    monkeypatch.setattr(openai_routes, "shape_vectors", spy)
    _up, sched, store = rig
    async with inference_app(store, sched) as url, httpx.AsyncClient(timeout=60) as h:
        r = await h.post(url + "/api/embed", json={"model": "e", "input": ["a b", "c"]})
        assert r.status_code == 200 and len(r.json()["embeddings"]) == 2
        assert r.json()["prompt_eval_count"] == 5
        r = await h.post(url + "/v1/embeddings", json={"model": "e", "input": ["a", "b"]})
        assert r.status_code == 200 and len(r.json()["data"]) == 2
    assert len(threads) == 2 and threading.main_thread() not in threads
