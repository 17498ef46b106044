"""`POST /v1/rerank` for reranker GGUFs (pooling type rank). No reranker GGUF can be had from
the package registries here, so the runner is the scripted fake llama-server (its /v1/rerank
answers in llama-server's shape); the launch flags and the store's detection are checked on
their own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from aiohttp import ClientSession

from ollamapy.config import load_settings
from ollamapy.placement.gpu import Inventory, SystemInfo
from ollamapy.runner.flags import LaunchConfig, build_args
from ollamapy.scheduler.policy import needs_reload, resolve_spec
from ollamapy.store import store as st
from tests.fake_runner import FakeRunner, FakeScheduler, FakeStore, fake_model, inference_app
from tests.unit.test_gguf import write_fixture

DOCS = ["the cat sat on the mat", "stock prices fell", "a cat and a dog"]


@pytest.fixture
async def rig() -> AsyncIterator[tuple[str, FakeRunner, FakeScheduler]]:
    up = await FakeRunner().start()
    session = ClientSession()
    store = FakeStore({
        "bge-reranker:latest": fake_model("bge-reranker:latest", None, ("embedding",),
                                          reranker=True),
        "embedder:latest": fake_model("embedder:latest", None, ("embedding",),
                                      digest="1" * 64),
    })
    sched = FakeScheduler(session, {"gen": up.url, "emb": up.url})
    try:
        async with inference_app(store, sched) as url:
            yield url, up, sched
    finally:
        await up.close()
        await session.close()


async def test_rerank(rig: tuple[str, FakeRunner, FakeScheduler]) -> None:
    url, up, sched = rig
    async with httpx.AsyncClient() as h:
        r = await h.post(url + "/v1/rerank", json={"model": "bge-reranker", "query": "cat",
                                                   "documents": DOCS, "top_n": 2,
                                                   "return_documents": True})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model"] == "bge-reranker" and body["object"] == "list"
        assert [x["index"] for x in body["results"]] == [2, 0]
        assert body["results"][0]["relevance_score"] == pytest.approx(0.2)  # 1 of its 5 words
        assert body["results"][0]["document"] == {"text": DOCS[2]}
        assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 0
        assert up.rerank_bodies[-1] == {"query": "cat", "documents": DOCS, "top_n": 2}
        assert sched.calls[-1]["embedding"] is True
        # Cohere-style {"text": ...} documents, every result by default, no documents echoed
        r = await h.post(url + "/v1/rerank", json={"model": "bge-reranker", "query": "cat",
                                                   "documents": [{"text": d} for d in DOCS]})
        results = r.json()["results"]
        assert len(results) == 3 and all("document" not in x for x in results)


@pytest.mark.parametrize(("body", "message"), [
    ({"model": "embedder", "query": "q", "documents": ["d"]}, '"embedder" does not support rerank'),
    ({"model": "bge-reranker", "documents": ["d"]}, "query is required"),
    ({"model": "bge-reranker", "query": "q", "documents": []},
     "documents must be a non-empty list of strings"),
    ({"model": "bge-reranker", "query": "q", "documents": ["d"], "top_n": 0},
     "top_n must be a positive integer"),
    ({"model": "bge-reranker", "query": "q", "documents": ["d"] * 1025},
     "too many documents: 1025 (at most 1024)"),
    ({"query": "q", "documents": ["d"]}, "model is required"),
])
async def test_rerank_errors(rig: tuple[str, FakeRunner, FakeScheduler], body: dict[str, object],
                             message: str) -> None:
    url, up, _ = rig
    async with httpx.AsyncClient() as h:
        r = await h.post(url + "/v1/rerank", json=body)
    assert r.status_code == 400
    assert r.json()["error"]["message"] == message
    assert up.rerank_bodies == []


async def test_unknown_model_is_404(rig: tuple[str, FakeRunner, FakeScheduler]) -> None:
    url, _, _ = rig
    async with httpx.AsyncClient() as h:
        r = await h.post(url + "/v1/rerank", json={"model": "nope", "query": "q",
                                                   "documents": ["d"]})
    assert r.status_code == 404


def test_reranker_runner_flags() -> None:
    args = build_args(LaunchConfig(model_path=Path("m"), num_ctx=2048, embedding=True,
                                   embedding_model=True, rerank=True))
    assert "--rerank" in args and "--embeddings" not in args and "--pooling" not in args
    cpu = Inventory(SystemInfo(total=8 << 30, free=4 << 30))
    spec = resolve_spec(Path("m"), {}, settings=load_settings({}), inventory=cpu, facts=None,
                        rerank=True)
    assert spec.rerank and spec.embedding
    assert not needs_reload(spec, spec)


def test_store_detects_reranker_ggufs(tmp_path: Path) -> None:
    from tests.families_fixture import Family, write_family_model

    store = st.ModelStore(tmp_path / "models")
    rank = write_fixture(tmp_path / "r.gguf", pooling_type=4, template=None)
    mean = write_fixture(tmp_path / "e.gguf", pooling=True, template=None)
    write_family_model(store.root, "rr:latest", rank, Family(template=None))
    write_family_model(store.root, "ee:latest", mean, Family(template=None))
    assert store.resolve("rr").reranker and "embedding" in store.resolve("rr").capabilities
    assert not store.resolve("ee").reranker
