"""The per-request path around the relay: what happens before the first token reaches the
client (nothing that waits on extra upstream round trips) and the cheap model lookup."""

from __future__ import annotations

from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web

from ollamapy.api.inference import GenerateRequest
from ollamapy.errors import RunnerError
from ollamapy.relay import FLUSH, Step
from ollamapy.server import keys
from ollamapy.server.routes import inference
from ollamapy.store.model import Model

FINAL = {"content": "", "stop": True, "stop_type": "eos", "tokens": [],
         "timings": {"prompt_n": 3, "prompt_ms": 1.0, "predicted_n": 2, "predicted_ms": 2.0}}


def _model() -> Model:
    return Model(name="registry.ollama.ai/library/m:latest", short_name="m:latest",
                 digest="0" * 64, model_path=Path("/nonexistent.gguf"), size=0,
                 modified_at=datetime.now(UTC), template="{{ .Prompt }}",
                 capabilities=("completion",))


def _app() -> web.Application:
    class Scheduler:
        @asynccontextmanager
        async def lease(self, m: Model, opts: Any, ka: Any, *, embedding: bool = False
                        ) -> AsyncIterator[SimpleNamespace]:
            yield SimpleNamespace(base_url="http://upstream", session=None, load_duration=0.0,
                                  num_ctx=4096, props={}, model=m,
                                  fail=lambda e: RunnerError(str(e)))

    app = web.Application()
    app[keys.SCHEDULER_KEY] = Scheduler()  # type: ignore[arg-type]
    return app


async def test_context_tokenize_starts_only_after_first_chunk_is_flushed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`context` needs the prompt's token ids (an extra /tokenize request). It must not be
    issued before the first chunk has gone out, or it competes with the first token."""
    calls: list[str] = []

    def tokenize(session: Any, url: str, text: str, *, add_special: bool = False
                 ) -> Coroutine[Any, Any, list[int]]:
        calls.append(text)

        async def ids() -> list[int]:
            return [1, 2, 3]
        return ids()

    async def run_completion(plan: Any, lease: Any, body: Any, parser: Any
                             ) -> AsyncIterator[Step]:
        yield Step(content="a", tokens=[7])
        yield Step(flush=True)
        yield Step(content="b", tokens=[8])
        yield Step(flush=True)
        last = Step(tokens=[])
        last.final = FINAL
        yield last

    monkeypatch.setattr(inference.upstream, "tokenize", tokenize)
    monkeypatch.setattr(inference, "run_completion", run_completion)
    plan = inference.Plan(_model(), "m", {}, None, {}, None, 0, True, True)
    req = GenerateRequest(model="m", prompt="hello")
    gen = inference.generate_chunks(_app(), plan, req)
    first = await gen.__anext__()
    assert first["response"] == "a"
    assert await gen.__anext__() is FLUSH
    assert calls == []  # the writer flushes the first chunk now; nothing else went upstream
    rest = [c async for c in gen]
    assert calls == ["hello"]
    final = rest[-1]
    assert final["done"] is True and final["context"] == [1, 2, 3, 7, 8]


def test_model_lookup_hit_is_one_stat(tmp_path: Path) -> None:
    """A repeated name costs a stat of the cached manifest path, not the store's lookup
    (name parsing, case-insensitive search, symlink checks: ~0.2 ms per request)."""
    manifest = tmp_path / "manifest"
    manifest.write_text("v1")
    finds: list[object] = []
    m = _model()

    class Store:
        def find_manifest(self, name: object) -> Path | None:
            finds.append(name)
            return manifest

        def resolve(self, name: str) -> Model:
            return m

    app = web.Application()
    app[keys.STORE_KEY] = Store()  # type: ignore[arg-type]
    for _ in range(3):
        assert inference.resolve_model(app, "lookup-test") is m
    assert len(finds) == 1
    manifest.unlink()
    manifest.write_text("v2!")  # replaced atomically by a new file: looked up again
    inference.resolve_model(app, "lookup-test")
    assert len(finds) == 2
