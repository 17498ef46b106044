"""The per-request path around the relay: what happens before the first token reaches the
client (nothing that waits on extra upstream round trips), against the shared fake runner."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp import ClientSession

from ollamapy.errors import OllamaError
from ollamapy.inference import engine
from ollamapy.inference import prompt as prompts
from ollamapy.inference.events import Done, TextDelta
from ollamapy.inference.request import InferenceRequest
from ollamapy.inference.services import Services
from ollamapy.runner.client import RunnerClient
from ollamapy.store.model import Model
from tests.fake_runner import (
    FakeLease,
    FakeRunner,
    FakeScheduler,
    FakeStore,
    fake_model,
    inference_app,
)


def _model() -> Model:
    return fake_model("m:latest", "{{ .Prompt }}")


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeRunner, ClientSession]]:
    up = await FakeRunner().start()
    session = ClientSession()
    try:
        yield up, session
    finally:
        await session.close()
        await up.close()


async def test_context_tokenize_goes_up_after_the_completion_and_before_the_first_token(
        fake: tuple[FakeRunner, ClientSession]) -> None:
    """`context` needs the prompt's token ids (an extra /tokenize request). It goes up once the
    /completion is out, never ahead of it (it must not delay the prompt's evaluation), and is
    answered while the runner evaluates the prompt: sent after the first token, its round trip
    would hold the CPU that the client needs to read that token."""
    up, session = fake
    up.pieces = ["a", "b"]
    up.delay = 0.05  # the "prompt evaluation" before the first event
    svc = Services(FakeStore({"m:latest": _model()}), FakeScheduler(session, {"gen": up.url}))
    gen = engine.run(svc, InferenceRequest(model="m", prompt="hello", want_context=True))
    first = await gen.__anext__()
    assert isinstance(first, TextDelta) and first.text == "a"
    assert up.arrivals == ["/completion", "/tokenize"]
    assert up.tokenized == ["hello"]
    rest = [e async for e in gen]
    assert up.tokenized == ["hello"]  # asked once
    final = rest[-1]
    assert isinstance(final, Done) and final.context == [1, 10, 1, 1]  # prompt ids + answer


async def test_a_failed_completion_cancels_the_context_tokenize(
        fake: tuple[FakeRunner, ClientSession]) -> None:
    """The /tokenize runs beside the /completion: when the completion fails, the task goes with
    it (no stray request left running, no 'exception never retrieved')."""
    up, session = fake
    up.mode = "error_first"
    svc = Services(FakeStore({"m:latest": _model()}), FakeScheduler(session, {"gen": up.url}))
    before = {t for t in asyncio.all_tasks()}
    with pytest.raises(OllamaError):
        async for _ in engine.run(svc, InferenceRequest(model="m", prompt="hello",
                                                         want_context=True)):
            pass
    assert {t for t in asyncio.all_tasks() if not t.done()} - before == set()


async def test_non_finite_numbers_never_reach_llama_server() -> None:
    """Python's JSON parser accepts NaN/Infinity; llama-server answers such a body with a 500.
    Any body carrying one (a client's schema or tool parameters) is refused with a 400 before
    a connection is made (session None: nothing may be sent)."""
    from ollamapy.errors import BadRequest

    client = RunnerClient(None, "http://upstream")  # type: ignore[arg-type]
    body = {"prompt": "x", "n_predict": 1, "json_schema": {"type": "number",
                                                          "maximum": float("nan")}}
    with pytest.raises(BadRequest, match="NaN and Infinity"):
        async for _ in client.completion(body):
            pass
    with pytest.raises(BadRequest, match="NaN and Infinity"):
        await client.apply_template([{"role": "user", "content": "x"}],
                                    tools=[{"type": "function", "function": {
                                        "name": "f", "parameters": {"x": float("inf")}}}])


async def test_openai_completions_skip_context_tokenize(
        fake: tuple[FakeRunner, ClientSession]) -> None:
    """/v1/completions never returns `context`, so it must not pay the /tokenize for it;
    /api/generate still does."""
    up, session = fake
    up.pieces = ["a"]
    store = FakeStore({"cmpl-test:latest": _model()})
    async with inference_app(store, FakeScheduler(session, {"gen": up.url})) as url, \
            httpx.AsyncClient() as h:
        for stream in (False, True):
            r = await h.post(f"{url}/v1/completions", json={
                "model": "cmpl-test", "prompt": "hi", "stream": stream})
            assert r.status_code == 200, r.text
        assert up.tokenized == []
        r = await h.post(f"{url}/api/generate", json={
            "model": "cmpl-test", "prompt": "hi", "stream": False})
        assert r.json()["context"] == [1, 10, 1]
        assert up.tokenized == ["hi"]


async def test_leading_textual_bos_stripped_only_when_tokenizer_adds_one(
        fake: tuple[FakeRunner, ClientSession]) -> None:
    """Gemma templates start with `<bos>`; llama-server's tokenizer adds BOS itself, so the
    text one would make two (Ollama strips it). Models that add no BOS keep the text."""
    a, session = fake
    b = await FakeRunner(adds_bos=False).start()
    try:
        m = fake_model("m:latest", digest="8" * 64)
        lease_a = FakeLease(RunnerClient(session, a.url), m)
        lease_b = FakeLease(RunnerClient(session, b.url), m)
        gemma = prompts.Prompt("<bos><start_of_turn>user\nhi<end_of_turn>\n")
        out = await engine.strip_leading_bos(lease_a, m.digest, gemma)
        assert out.text == "<start_of_turn>user\nhi<end_of_turn>\n"
        assert (await engine.strip_leading_bos(lease_a, m.digest, gemma)).text == out.text
        assert a.tokenized == [""]  # asked once per runner and model
        assert (await engine.strip_leading_bos(lease_b, m.digest, gemma)).text == gemma.text
        plain = prompts.Prompt("<|im_start|>user\nhi")
        assert await engine.strip_leading_bos(lease_a, m.digest, plain) is plain
        assert (a.tokenized, b.tokenized) == ([""], [""])
    finally:
        await b.close()


async def test_generate_and_chat_send_prompt_without_double_bos(
        fake: tuple[FakeRunner, ClientSession]) -> None:
    up, session = fake
    gemma = fake_model("g:latest", "<bos>{{ range .Messages }}<turn>{{ .Content }}{{ end }}"
                       "<turn>", digest="9" * 64)
    svc = Services(FakeStore({"g:latest": gemma}), FakeScheduler(session, {"gen": up.url}))
    [e async for e in engine.run(svc, InferenceRequest(model="g", prompt="hi"))]
    from ollamapy.api.inference import Message

    [e async for e in engine.run(svc, InferenceRequest(
        model="g", messages=[Message(role="user", content="yo")]))]
    assert [b["prompt"] for b in up.bodies] == ["<turn>hi<turn>", "<turn>yo<turn>"]
