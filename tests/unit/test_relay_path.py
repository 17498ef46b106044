"""The per-request path around the relay: what happens before the first token reaches the
client (nothing that waits on extra upstream round trips) and the cheap model lookup."""

from __future__ import annotations

import dataclasses
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
            yield SimpleNamespace(base_url="http://upstream", session=None, api_key="",
                                  load_duration=0.0, num_ctx=4096, props={}, model=m,
                                  fail=lambda e: RunnerError(str(e)))

    app = web.Application()
    app[keys.SCHEDULER_KEY] = Scheduler()  # type: ignore[arg-type]
    return app


async def test_context_tokenize_starts_only_after_first_chunk_is_flushed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`context` needs the prompt's token ids (an extra /tokenize request). It must not be
    issued before the first chunk has gone out, or it competes with the first token."""
    calls: list[str] = []

    def tokenize(session: Any, url: str, text: str, *, add_special: bool = False,
                 api_key: str = "") -> Coroutine[Any, Any, list[int]]:
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


async def test_non_finite_numbers_never_reach_llama_server() -> None:
    """Python's JSON parser accepts NaN/Infinity; llama-server answers such a body with a 500.
    Any body carrying one (a client's schema or tool parameters) is refused with a 400 before
    a connection is made (session None: nothing may be sent)."""
    from ollamapy.errors import BadRequest
    from ollamapy.runner import client

    body = {"prompt": "x", "n_predict": 1, "json_schema": {"type": "number",
                                                          "maximum": float("nan")}}
    with pytest.raises(BadRequest, match="NaN and Infinity"):
        async for _ in client.completion_stream(None, "http://upstream", body):  # type: ignore[arg-type]
            pass
    with pytest.raises(BadRequest, match="NaN and Infinity"):
        await client.apply_template(None, "http://upstream",  # type: ignore[arg-type]
                                    [{"role": "user", "content": "x"}],
                                    tools=[{"type": "function", "function": {
                                        "name": "f", "parameters": {"x": float("inf")}}}])


async def test_openai_completions_skip_context_tokenize(monkeypatch: pytest.MonkeyPatch) -> None:
    """/v1/completions never returns `context`, so it must not pay the /tokenize for it;
    /api/generate still does."""
    from aiohttp import ClientSession

    from ollamapy.runner.process import free_port
    from ollamapy.server import middleware
    from ollamapy.server.routes import openai as openai_routes

    calls: list[str] = []

    async def tokenize(session: Any, url: str, text: str, *, add_special: bool = False,
                       api_key: str = "") -> list[int]:
        calls.append(text)
        return [1]

    async def run_completion(plan: Any, lease: Any, body: Any, parser: Any
                             ) -> AsyncIterator[Step]:
        yield Step(content="a", tokens=[7])
        yield Step(flush=True)
        last = Step()
        last.final = FINAL
        yield last

    monkeypatch.setattr(inference.upstream, "tokenize", tokenize)
    monkeypatch.setattr(inference, "run_completion", run_completion)

    class Store:
        def resolve(self, name: str) -> Model:
            return _model()

    app = _app()
    app.middlewares.append(middleware.errors)
    app[keys.STORE_KEY] = Store()  # type: ignore[arg-type]
    inference.setup(app)
    openai_routes.setup(app)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with ClientSession() as s:
            for stream in (False, True):
                async with s.post(f"http://127.0.0.1:{port}/v1/completions", json={
                        "model": "cmpl-test", "prompt": "hi", "stream": stream}) as r:
                    assert r.status == 200, await r.text()
                    await r.read()
            assert calls == []
            async with s.post(f"http://127.0.0.1:{port}/api/generate", json={
                    "model": "cmpl-test", "prompt": "hi", "stream": False}) as r:
                assert (await r.json())["context"] == [1, 7]
            assert calls == ["hi"]
    finally:
        await runner.cleanup()


async def test_leading_textual_bos_stripped_only_when_tokenizer_adds_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Gemma templates start with `<bos>`; llama-server's tokenizer adds BOS itself, so the
    text one would make two (Ollama strips it). Models that add no BOS keep the text."""
    from ollamapy import prompt as prompts

    asked: list[str] = []
    adds = {"http://a": True, "http://b": False}

    async def tokenize(session: Any, url: str, text: str, *, add_special: bool = False,
                       api_key: str = "") -> list[int]:
        asked.append(url)
        assert text == "" and add_special
        return [2] if adds[url] else []

    monkeypatch.setattr(inference.upstream, "tokenize", tokenize)
    m = _model()
    lease_a = SimpleNamespace(base_url="http://a", session=None, model=m, api_key="")
    lease_b = SimpleNamespace(base_url="http://b", session=None, model=m, api_key="")
    gemma = prompts.Prompt("<bos><start_of_turn>user\nhi<end_of_turn>\n")
    out = await inference.strip_leading_bos(lease_a, gemma)
    assert out.text == "<start_of_turn>user\nhi<end_of_turn>\n"
    assert (await inference.strip_leading_bos(lease_a, gemma)).text == out.text
    assert asked == ["http://a"]  # asked once per runner and model
    assert (await inference.strip_leading_bos(lease_b, gemma)).text == gemma.text
    plain = prompts.Prompt("<|im_start|>user\nhi")
    assert await inference.strip_leading_bos(lease_a, plain) is plain
    assert asked == ["http://a", "http://b"]


async def test_generate_and_chat_send_prompt_without_double_bos(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from ollamapy.api.inference import ChatRequest, Message

    async def tokenize(session: Any, url: str, text: str, *, add_special: bool = False,
                       api_key: str = "") -> list[int]:
        return [2] if text == "" else [1]

    sent: list[str] = []

    async def run_completion(plan: Any, lease: Any, body: Any, parser: Any
                             ) -> AsyncIterator[Step]:
        sent.append(body["prompt"])
        last = Step()
        last.final = FINAL
        yield last

    monkeypatch.setattr(inference.upstream, "tokenize", tokenize)
    monkeypatch.setattr(inference, "run_completion", run_completion)
    gemma = dataclasses.replace(
        _model(), digest="9" * 64,
        template="<bos>{{ range .Messages }}<turn>{{ .Content }}{{ end }}<turn>")
    plan = inference.Plan(gemma, "g", {}, None, {}, None, 0, True, True)
    [c async for c in inference.generate_chunks(_app(), plan, GenerateRequest(
        model="g", prompt="hi"))]
    [c async for c in inference.chat_chunks(_app(), plan, ChatRequest(
        model="g", messages=[Message(role="user", content="yo")]))]
    assert sent == ["<turn>hi<turn>", "<turn>yo<turn>"]
