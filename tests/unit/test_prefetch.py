"""A model lookup that misses the store's cache reads manifests, text layers and the GGUF
header and parses the template: a hostile model makes that slow, so it runs off the event loop
(issue 11); a cache hit stays on the loop (one stat) so the fast path pays no thread hop."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

from ollamapy.errors import NotFound
from ollamapy.inference.plan import prefetch, resolve_model
from ollamapy.store.model import Model


class RecordingStore:
    def __init__(self, model: Model | None, hit: bool) -> None:
        self.model, self.hit = model, hit
        self.resolved_on: list[int] = []

    def cached(self, name: str) -> Model | None:
        return self.model if self.hit else None

    def resolve(self, name: str) -> Model:
        self.resolved_on.append(threading.get_ident())
        if self.model is None:
            raise NotFound(f"model '{name}' not found")
        self.hit = True
        return self.model


def _model() -> Model:
    return Model(name="m:latest", short_name="m:latest", digest="0" * 64,
                 model_path=Path("/nonexistent"), size=0, modified_at=datetime.now(UTC))


async def test_a_cache_miss_is_resolved_in_a_worker_thread() -> None:
    store = RecordingStore(_model(), hit=False)
    await prefetch(store, "m")
    assert store.resolved_on and store.resolved_on[0] != threading.get_ident()
    assert resolve_model(store, "m").name == "m:latest"  # then served from the cache


async def test_a_cache_hit_never_leaves_the_loop() -> None:
    store = RecordingStore(_model(), hit=True)
    await prefetch(store, "m")
    assert store.resolved_on == []


async def test_errors_are_worded_by_resolve_model_not_prefetch() -> None:
    store = RecordingStore(None, hit=False)
    await prefetch(store, "m")  # swallowed here ...
    try:
        resolve_model(store, "m", not_found="model \"m\" not found, try pulling it first")
    except NotFound as e:  # ... and reported in the route's own words
        assert "try pulling" in e.message
    else:
        raise AssertionError("expected NotFound")
    await prefetch(store, "bad name!")  # an invalid name never reaches the store
    assert len(store.resolved_on) == 2
