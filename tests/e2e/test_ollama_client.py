"""The official `ollama` Python client against a real `ollamapy serve` with SmolLM2: generate,
chat, embed, embeddings; streamed and not; format json; options; cancellation on disconnect."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import ollama
import psutil
import pytest

from tests.conftest import FAST_PARAMS, INFERENCE_ENV, ServerProc, running_server

pytestmark = pytest.mark.e2e

M = "smollm2:135m"
OPTS = {"num_predict": 8, "temperature": 0, "seed": 42}


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    # OLLAMA_DEBUG: runners keep /slots, which the disconnect tests watch to see a slot go idle.
    with running_server(tmp_path_factory.mktemp("serve"), {**INFERENCE_ENV, "OLLAMA_DEBUG": "1"},
                        params=FAST_PARAMS) as s:
        yield s


@pytest.fixture
def client(srv: ServerProc) -> Iterator[ollama.Client]:
    with ollama.Client(host=srv.url, timeout=120) as c:
        yield c


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
    # greedy + seed: the model closes its object after ~20 tokens, so the whole answer parses
    r = client.generate(model=M, prompt="Describe a cat as JSON with keys name and age.",
                        format="json", options={"num_predict": 60, "temperature": 0, "seed": 42})
    assert r.done_reason == "stop", r.response
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


@dataclass(frozen=True)
class Runner:
    url: str
    key: str


def generation_runner(srv: ServerProc) -> Runner:
    """The server's (only) generation llama-server: its URL from its command line, its key from
    its environment (readable by its own user only, as a test running as that user is)."""
    found = [c for c in psutil.Process(srv.proc.pid).children(recursive=True)
             if "llama-server" in c.name()]
    gen = [c for c in found if "--embeddings" not in c.cmdline()]
    assert len(gen) == 1, found
    argv = gen[0].cmdline()
    return Runner(f"http://127.0.0.1:{argv[argv.index('--port') + 1]}",
                  gen[0].environ()["LLAMA_API_KEY"])


def slot_busy(runner: Runner) -> bool:
    r = httpx.get(runner.url + "/slots", timeout=10,
                  headers={"Authorization": f"Bearer {runner.key}"})
    assert r.status_code == 200, r.text
    return any(s.get("is_processing") for s in r.json())


def wait_slot_idle(runner: Runner, seconds: float = 30.0) -> None:
    """A liveness bound, far below the minutes an uncancelled ENDLESS request keeps it busy."""
    deadline = time.monotonic() + seconds
    while slot_busy(runner):
        assert time.monotonic() < deadline, f"runner slot still busy after {seconds} s"
        time.sleep(0.05)


def test_server_runners_refuse_clients_without_their_key(srv: ServerProc) -> None:
    """Another local process cannot go around the server: the runner it started answers only
    /health without the runner's key."""
    with httpx.Client(timeout=60) as h:
        h.post(srv.url + "/api/generate", json={"model": M, "prompt": ""})  # load first
        runner = generation_runner(srv)
        assert h.get(runner.url + "/health").status_code == 200
        for path in ("/props", "/slots", "/v1/models"):
            assert h.get(runner.url + path).status_code == 401, path
        r = h.post(runner.url + "/completion", json={"prompt": "hi", "n_predict": 1})
        assert r.status_code == 401
        ok = h.get(runner.url + "/props", headers={"Authorization": f"Bearer {runner.key}"})
        assert ok.status_code == 200


# Greedy counting never reaches an end-of-sequence token (checked: 2000 of 2000 tokens), so this
# request keeps the only slot busy for 20000 tokens (minutes on any CPU) unless it is cancelled.
ENDLESS = {"model": M, "prompt": "1, 2, 3, 4, 5, 6, 7, 8,", "raw": True,
           "options": {"num_predict": 20000, "temperature": 0, "seed": 1}}


def test_disconnect_frees_the_only_slot(srv: ServerProc) -> None:
    """OLLAMA_NUM_PARALLEL=1: a client that walks away mid-generation (streaming or not) cancels
    the upstream request, so the runner's only slot goes idle and the next request is served."""
    with httpx.Client(timeout=60) as h:
        h.post(srv.url + "/api/generate", json={"model": M, "prompt": ""})  # load first
        runner = generation_runner(srv)
        with h.stream("POST", srv.url + "/api/generate", json=ENDLESS) as resp:
            for n, _line in enumerate(resp.iter_lines()):
                if n >= 3:  # leaving the loop closes the stream: the client is gone
                    assert slot_busy(runner)  # still generating as the client leaves
                    break
        wait_slot_idle(runner)
        r = h.post(srv.url + "/api/generate", json={
            "model": M, "prompt": "hi", "stream": False, "options": {"num_predict": 2}})
        assert r.status_code == 200 and r.json()["done"]
    with httpx.Client(timeout=2.0) as h, pytest.raises(httpx.ReadTimeout):
        h.post(srv.url + "/api/generate", json={**ENDLESS, "stream": False})
    wait_slot_idle(runner)
    assert generation_runner(srv) == runner  # the same runner, not a reload
    with httpx.Client(timeout=60) as h:
        r = h.post(srv.url + "/api/chat", json={
            "model": M, "messages": [{"role": "user", "content": "hi"}], "stream": False,
            "options": {"num_predict": 2}})
    assert r.status_code == 200 and r.json()["done"]


@pytest.fixture(scope="module")
def broken_model(srv: ServerProc, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A well-formed GGUF (ollamapy's reader accepts it) that llama-server cannot load: its
    architecture is one llama.cpp does not know. Created through the official client."""
    import gguf
    import numpy as np

    path = tmp_path_factory.mktemp("bogus") / "bogus.gguf"
    w = gguf.GGUFWriter(str(path), "bogusarch")
    w.add_block_count(1)
    w.add_context_length(128)
    w.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with ollama.Client(host=srv.url, timeout=120) as c:
        digest = c.create_blob(path)
        assert c.create(model="broken", files={"bogus.gguf": digest}).status == "success"
    return "broken"


def load_error(client: ollama.Client, model: str, stream: bool) -> ollama.ResponseError:
    with pytest.raises(ollama.ResponseError) as ei:
        r = client.generate(model=model, prompt="hi", stream=stream)
        if stream:
            list(r)  # type: ignore[arg-type]
    return ei.value


def test_unloadable_model_is_a_clear_500_and_the_server_goes_on(
        client: ollama.Client, broken_model: str) -> None:
    for stream in (False, True):  # the load fails before the first byte: a real status
        e = load_error(client, broken_model, stream)
        assert e.status_code == 500
        assert e.error.startswith("llama runner process has terminated: exit status 1: ")
    assert all(m.model != f"{broken_model}:latest" for m in client.ps().models)
    assert client.generate(model=M, prompt="hi", options=OPTS).done  # nothing wedged


def test_unloadable_model_error_names_the_cause(client: ollama.Client,
                                                broken_model: str) -> None:
    e = load_error(client, broken_model, False)
    assert "error loading model: unknown model architecture: 'bogusarch'" in e.error
