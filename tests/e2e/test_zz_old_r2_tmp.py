"""The official `ollama` Python client against a real `ollamapy serve` with SmolLM2: generate,
chat, embed, embeddings; streamed and not; format json; options; cancellation on disconnect."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import ollama
import pytest

from tests.conftest import ServerProc, register_default_model, start_server, stop_server

pytestmark = pytest.mark.e2e

M = "smollm2:135m"
OPTS = {"num_predict": 8, "temperature": 0, "seed": 42}


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    tmp = tmp_path_factory.mktemp("serve")
    register_default_model(tmp / "models")
    s = start_server(tmp, {"OLLAMA_NUM_PARALLEL": "1", "OLLAMA_CONTEXT_LENGTH": "2048"})
    yield s
    stop_server(s)


@pytest.fixture
def client(srv: ServerProc) -> ollama.Client:
    return ollama.Client(host=srv.url, timeout=120)


def test_generate(client: ollama.Client) -> None:
    r = client.generate(model=M, prompt="Why is the sky blue?", options=OPTS)
    assert r.model == M and r.done and r.done_reason in ("stop", "length") and r.response
    assert 0 < (r.eval_count or 0) <= 8 and (r.prompt_eval_count or 0) > 5
    assert r.total_duration and r.total_duration >= (r.eval_duration or 0) > 0
    assert r.context and len(r.context) >= (r.prompt_eval_count or 0)
    parts = list(client.generate(model=M, prompt="Why is the sky blue?", options=OPTS,
                                 stream=True))
    assert parts[-1].done and all(not p.done for p in parts[:-1]) and len(parts) > 2
    assert "".join(p.response for p in parts) == r.response
    # num_predict is honoured and reported as "length"
    r1 = client.generate(model=M, prompt="Count to one hundred:", options={
        "num_predict": 3, "temperature": 0})
    assert r1.eval_count == 3 and r1.done_reason == "length"


def test_generate_context_and_raw(client: ollama.Client) -> None:
    first = client.generate(model=M, prompt="My name is Ada.", options=OPTS)
    follow = client.generate(model=M, prompt="What is my name?", context=first.context,
                             options=OPTS)
    assert follow.done and (follow.prompt_eval_count or 0) > len(first.context or [])
    raw = client.generate(model=M, prompt="<|im_start|>user\nHi<|im_end|>\n<|im_start|>"
                          "assistant\n", raw=True, options=OPTS)
    assert raw.done and raw.context is None


def test_chat(client: ollama.Client) -> None:
    msgs = [{"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Name a color."}]
    r = client.chat(model=M, messages=msgs, options=OPTS)
    assert r.message.role == "assistant" and r.message.content and r.done
    chunks = list(client.chat(model=M, messages=msgs, options=OPTS, stream=True))
    assert all(c.message is not None for c in chunks) and chunks[-1].done
    assert "".join(c.message.content or "" for c in chunks) == r.message.content
    history = [*msgs, {"role": "assistant", "content": r.message.content},
               {"role": "user", "content": "Another one."}]
    r2 = client.chat(model=M, messages=history, options=OPTS)
    assert r2.done and (r2.prompt_eval_count or 0) > (r.prompt_eval_count or 0)


def test_format_json(client: ollama.Client) -> None:
    r = client.generate(model=M, prompt="Describe a cat as JSON with keys name and age.",
                        format="json", options={"num_predict": 60, "temperature": 0})
    if r.done_reason == "stop":
        assert isinstance(json.loads(r.response), dict)
    schema = {"type": "object", "properties": {"age": {"type": "integer"}},
              "required": ["age"]}
    c = client.chat(model=M, messages=[{"role": "user", "content": "Age 7 cat."}],
                    format=schema, options={"num_predict": 30, "temperature": 0})
    assert isinstance(json.loads(c.message.content or "")["age"], int)


def test_embed_and_embeddings(client: ollama.Client) -> None:
    r = client.embed(model=M, input=["The sky is blue.", "Grass is green."])
    assert len(r.embeddings) == 2 and len(r.embeddings[0]) == 576
    assert all(abs(sum(x * x for x in v) - 1) < 1e-3 for v in r.embeddings)
    assert (r.prompt_eval_count or 0) >= 8 and r.total_duration
    d = client.embed(model=M, input="The sky is blue.", dimensions=16)
    assert len(d.embeddings[0]) == 16
    e = client.embeddings(model=M, prompt="The sky is blue.")
    assert len(e.embedding) == 576
    cos = sum(a * b for a, b in zip(e.embedding, r.embeddings[0], strict=True))
    assert cos > 0.999
    assert client.embed(model=M, input=[]).embeddings == []


def test_errors_and_load_unload(srv: ServerProc, client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as ei:
        client.generate(model="missing-model", prompt="hi")
    assert ei.value.status_code == 404 and "not found" in ei.value.error
    with pytest.raises(ollama.ResponseError) as ei:
        client.chat(model=M, messages=[{"role": "user", "content": "x"}],
                    options={"temperature": "hot"})
    assert ei.value.status_code == 400 and "temperature" in ei.value.error
    with pytest.raises(ollama.ResponseError) as ei:
        client.chat(model=M, messages=[{"role": "user", "content": "x"}], think=True)
    assert ei.value.error == f'"{M}" does not support thinking'
    r = client.generate(model=M, prompt="")
    assert r.done and r.done_reason == "load"
    assert any(m.model == M for m in client.ps().models)
    r = client.generate(model=M, prompt="", keep_alive=0)
    assert r.done_reason == "unload"
    deadline = time.monotonic() + 15
    while client.ps().models and time.monotonic() < deadline:
        time.sleep(0.1)
    assert client.ps().models == []
    # legacy options from the Python client's Options model are ignored, not errors
    r = client.generate(model=M, prompt="hi", options={**OPTS, "mirostat": 0, "tfs_z": 1.0,
                                                       "numa": False})
    assert r.done


def test_disconnect_frees_the_only_slot(srv: ServerProc) -> None:
    """OLLAMA_NUM_PARALLEL=1: after a streaming client walks away mid-generation, the next
    request is answered at once (upstream was cancelled, not left generating 2000 tokens)."""
    body = {"model": M, "prompt": "Write a long story about a dragon.",
            "options": {"num_predict": 2000, "temperature": 0}}
    with httpx.Client(timeout=60) as h:
        h.post(srv.url + "/api/generate", json={"model": M, "prompt": ""})  # load first
        with h.stream("POST", srv.url + "/api/generate", json=body) as resp:
            for n, _line in enumerate(resp.iter_lines()):
                if n >= 3:
                    break
        t0 = time.monotonic()
        r = h.post(srv.url + "/api/generate", json={
            "model": M, "prompt": "hi", "stream": False, "options": {"num_predict": 2}})
        assert r.status_code == 200
        assert time.monotonic() - t0 < 10.0, "the slot was not freed"  # vs ~25 s+ if not
    with httpx.Client(timeout=0.7) as h, pytest.raises(httpx.ReadTimeout):
        h.post(srv.url + "/api/generate", json={**body, "stream": False})
    t0 = time.monotonic()
    with httpx.Client(timeout=60) as h:
        r = h.post(srv.url + "/api/chat", json={
            "model": M, "messages": [{"role": "user", "content": "hi"}], "stream": False,
            "options": {"num_predict": 2}})
    assert r.status_code == 200 and time.monotonic() - t0 < 10.0
