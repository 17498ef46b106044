"""RunnerClient against the shared fake runner: auth header, the small JSON endpoints, and a
runner that drops the stream mid-answer (the lease is told, the client gets Ollama's error)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import ClientSession

from ollamapy.errors import RunnerError
from ollamapy.inference import engine
from ollamapy.inference.events import TextDelta
from ollamapy.inference.request import InferenceRequest
from ollamapy.inference.services import Services
from ollamapy.runner.client import RunnerClient, RunnerConnectionError
from tests.fake_runner import FakeRunner, FakeScheduler, FakeStore, fake_model


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeRunner, ClientSession]]:
    up = await FakeRunner(pieces=["hi"], props_body={"total_slots": 3}).start()
    session = ClientSession()
    try:
        yield up, session
    finally:
        await session.close()
        await up.close()


async def test_api_key_is_sent_as_bearer_only_when_set(
        fake: tuple[FakeRunner, ClientSession]) -> None:
    up, session = fake
    for key, want in (("runner-key", "Bearer runner-key"), (None, None)):
        client = RunnerClient(session, up.url, api_key=key)
        events = [e async for e in client.completion({"prompt": "x", "n_predict": 1})]
        assert events[-1] == {**events[-1], "stop": True}
        assert up.headers[-1].get("authorization") == want
        assert "x-conversation-id" not in up.headers[-1]


async def test_json_endpoints(fake: tuple[FakeRunner, ClientSession]) -> None:
    up, session = fake
    client = RunnerClient(session, up.url + "/")
    assert client.base_url == up.url
    assert await client.health() is True
    assert (await client.props())["total_slots"] == 3
    assert await client.n_vocab() == up.n_vocab
    assert await client.tokenize("a b", add_special=True) == [1, 10, 11]
    assert await client.detokenize([10, 11]) == "w w"
    assert await client.apply_template([{"role": "user", "content": "q"}], tools=None) == \
        "[user]q[assistant]"
    vecs, n = await client.embeddings(["ab", "c"])
    assert [v[0] for v in vecs] == [3.0, 2.0] and n == 4
    await up.close()
    assert await client.health() is False
    with pytest.raises(RunnerConnectionError):
        await client.tokenize("x")


async def test_dropped_stream_fails_the_lease(fake: tuple[FakeRunner, ClientSession]) -> None:
    up, session = fake
    up.mode = "disconnect"
    sched = FakeScheduler(session, {"gen": up.url})
    svc = Services(FakeStore({"m:latest": fake_model("m:latest", "{{ .Prompt }}")}), sched)
    got = []
    with pytest.raises(RunnerError):
        async for e in engine.run(svc, InferenceRequest(model="m", prompt="x")):
            got.append(e)
    assert any(isinstance(e, TextDelta) and e.text == "a" for e in got)
    assert len(sched.leases[-1].failures) == 1 and sched.active == 0


def test_engine_knows_no_http() -> None:
    """The engine reaches runners only through RunnerClient: no aiohttp, no URLs, no
    sessions in ollamapy/inference/ (the API families' translators own the wire)."""
    import ast
    from pathlib import Path

    import ollamapy.inference as pkg

    for path in Path(pkg.__file__).parent.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [
                    a.name for a in node.names]
                assert not any(n.startswith(("aiohttp", "ollamapy.server")) for n in names), \
                    path
            if isinstance(node, ast.Attribute):
                assert node.attr not in ("session", "post"), (path, node.lineno)
