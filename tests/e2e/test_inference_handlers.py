"""The inference handlers in-process against real llama-server runners (SmolLM2), with a
minimal stand-in scheduler lease so the handler logic is tested independently of the scheduler.
The full-stack tests (real `ollamapy serve`) are in test_ollama_client.py / test_openai_client.py.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import httpx
import ollama
import openai
import pytest
from aiohttp import web

from ollamapy.errors import NotFound, RunnerError
from ollamapy.runner.process import child_env, free_port
from ollamapy.server import keys, middleware
from ollamapy.server.routes import inference
from ollamapy.server.routes import openai as openai_routes
from ollamapy.store.model import Model

pytestmark = pytest.mark.e2e

CHATML = """{{- range .Messages }}<|im_start|>{{ .Role }}
{{ .Content }}<|im_end|>
{{ end }}<|im_start|>assistant
"""


@pytest.fixture(scope="module")
def runners(runner_binary: Path, model_path: Path, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[dict[str, str]]:
    """One 1-slot generation runner and one embedding runner, shared by the module."""
    tmp = tmp_path_factory.mktemp("runners")
    procs: list[subprocess.Popen] = []
    urls: dict[str, str] = {}
    # One thread: llama.cpp's spinning workers crawl when they share 2 cores with anything else
    # (see FAST_PARAMS in conftest). --context-shift as ollamapy launches generation runners.
    common = ["-m", str(model_path), "--host", "127.0.0.1", "--jinja", "--no-ui", "--offline",
              "-t", "1", "-tb", "1", "--no-warmup"]
    specs = {"gen": ["-c", "2048", "-np", "1", "--context-shift"],
             "emb": ["-c", "1024", "-np", "1", "--embeddings", "--pooling", "mean"]}
    try:
        for name, extra in specs.items():
            port = free_port()
            with (tmp / f"{name}.log").open("wb") as log:  # the child keeps its own descriptor
                procs.append(subprocess.Popen(
                    [str(runner_binary), *common, *extra, "--port", str(port)],
                    env=child_env(os.environ, tmp), stdout=subprocess.DEVNULL, stderr=log))
            urls[name] = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        for url in urls.values():
            while True:
                try:
                    if httpx.get(url + "/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "runner did not start"
                time.sleep(0.05)
        yield urls
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def make_model(path: Path, name: str, template: str | None = None,
               caps: tuple[str, ...] = ("completion", "tools")) -> Model:
    return Model(name=f"registry.ollama.ai/library/{name}", short_name=name, digest="0" * 64,
                 model_path=path, size=path.stat().st_size, modified_at=datetime.now(UTC),
                 template=template, capabilities=caps, params={"stop": ["<|im_end|>"]})


class FakeStore:
    def __init__(self, models: dict[str, Model]) -> None:
        self.models = models

    def resolve(self, name: str) -> Model:
        key = name if ":" in name else f"{name}:latest"
        if key not in self.models:
            raise NotFound(f"model '{name}' not found")
        return self.models[key]


class FakeScheduler:
    """Hands out the pre-started runners; records leases so tests can see them released."""

    def __init__(self, urls: dict[str, str], session: aiohttp.ClientSession,
                 props: dict[str, dict[str, Any]]) -> None:
        self.urls = urls
        self.session = session
        self.props = props
        self.active = 0
        self.unloaded: list[str] = []
        self.calls: list[dict[str, Any]] = []

    @asynccontextmanager
    async def lease(self, model: Model, options: dict[str, Any], keep_alive: float | None, *,
                    embedding: bool = False) -> AsyncIterator[SimpleNamespace]:
        kind = "emb" if embedding else "gen"
        self.calls.append({"options": options, "keep_alive": keep_alive, "embedding": embedding})
        self.active += 1
        try:
            yield SimpleNamespace(base_url=self.urls[kind], session=self.session, api_key="",
                                  load_duration=0.001,
                                  num_ctx=min(int(options.get("num_ctx") or 2048), 2048)
                                  if kind == "gen" else 1024,
                                  props=self.props[kind], model=model,
                                  fail=lambda e: RunnerError(str(e)))
        finally:
            self.active -= 1

    async def unload(self, model: Model) -> bool:
        self.unloaded.append(model.short_name)
        return True


@pytest.fixture
async def app_url(runners: dict[str, str], model_path: Path,
                  monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[str, FakeScheduler]]:
    if not hasattr(keys, "SCHEDULER_KEY"):
        monkeypatch.setattr(keys, "SCHEDULER_KEY", web.AppKey("scheduler", object),
                            raising=False)
    if not hasattr(keys, "STORE_KEY"):
        monkeypatch.setattr(keys, "STORE_KEY", web.AppKey("store", object), raising=False)
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(keepalive_timeout=3))
    props = {}
    for k, u in runners.items():
        async with session.get(u + "/props") as r:
            props[k] = await r.json()
    sched = FakeScheduler(runners, session, props)
    app = web.Application(middlewares=[middleware.errors])
    app[keys.STORE_KEY] = FakeStore({  # type: ignore[misc]
        "smollm2:135m": make_model(model_path, "smollm2:135m"),
        "chatml:latest": make_model(model_path, "chatml:latest", CHATML),
        "embedonly:latest": make_model(model_path, "embedonly:latest", caps=("embedding",)),
    })
    app[keys.SCHEDULER_KEY] = sched  # type: ignore[misc]
    inference.setup(app)
    openai_routes.setup(app)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}", sched
    finally:
        await runner.cleanup()
        await session.close()


OPTS = {"num_predict": 8, "temperature": 0, "seed": 1}


async def test_generate_stream_and_not(app_url: tuple[str, FakeScheduler]) -> None:
    url, sched = app_url
    c = ollama.AsyncClient(host=url)
    r = await c.generate(model="smollm2:135m", prompt="Say hi", options=OPTS)
    assert r.done and r.done_reason in ("stop", "length") and r.response
    assert r.eval_count and r.eval_count <= 8 and r.prompt_eval_count and r.total_duration
    assert isinstance(r.eval_duration, int) and r.context and len(r.context) > r.eval_count
    parts = [p async for p in await c.generate(model="smollm2:135m", prompt="Say hi",
                                               options=OPTS, stream=True)]
    assert parts[-1].done and not any(p.done for p in parts[:-1])
    assert "".join(p.response for p in parts) == r.response  # greedy: same text
    # request options reach the scheduler merged over model params and defaults
    assert sched.calls[-1]["options"]["num_predict"] == 8
    assert sched.calls[-1]["options"]["stop"] == ["<|im_end|>"]
    assert sched.active == 0


async def test_chat_jinja_and_go_template_paths(app_url: tuple[str, FakeScheduler]) -> None:
    url, _ = app_url
    c = ollama.AsyncClient(host=url)
    msgs = [{"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": "What is 2+2?"}]
    a = await c.chat(model="smollm2:135m", messages=msgs, options=OPTS)
    b = await c.chat(model="chatml", messages=msgs, options=OPTS)
    # SmolLM2's GGUF template is ChatML too: both paths must render the same prompt
    assert a.message.content == b.message.content and a.message.role == "assistant"
    chunks = [ch async for ch in await c.chat(model="chatml", messages=msgs, options=OPTS,
                                              stream=True)]
    assert all(ch.message is not None for ch in chunks) and chunks[-1].done
    assert "".join(ch.message.content for ch in chunks) == b.message.content
    async with httpx.AsyncClient() as h:
        dbg = (await h.post(url + "/api/chat", json={
            "model": "chatml", "messages": msgs, "_debug_render_only": True,
            "stream": False})).json()
    assert dbg["_debug_info"]["rendered_template"] == (
        "<|im_start|>system\nAnswer briefly.<|im_end|>\n<|im_start|>user\nWhat is 2+2?"
        "<|im_end|>\n<|im_start|>assistant\n")


async def test_format_json(app_url: tuple[str, FakeScheduler]) -> None:
    url, _ = app_url
    c = ollama.AsyncClient(host=url)
    r = await c.generate(model="smollm2:135m", prompt="Give a JSON object with a name.",
                         format="json", options={"num_predict": 40, "temperature": 0})
    if r.done_reason == "stop":
        assert isinstance(json.loads(r.response), dict)
    else:
        assert r.response.lstrip().startswith("{")
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    r = await c.chat(model="smollm2:135m", messages=[{"role": "user", "content": "n=3"}],
                     format=schema, options={"num_predict": 20, "temperature": 0})
    assert isinstance(json.loads(r.message.content)["n"], int)


async def test_load_unload_and_errors(app_url: tuple[str, FakeScheduler]) -> None:
    url, sched = app_url
    async with httpx.AsyncClient(timeout=30) as h:
        r = (await h.post(url + "/api/generate", json={"model": "smollm2:135m"})).json()
        assert r["done_reason"] == "load" and r["done"] is True
        r = (await h.post(url + "/api/chat", json={"model": "smollm2:135m",
                                                   "keep_alive": 0})).json()
        assert r["done_reason"] == "unload" and r["message"]["content"] == ""
        assert sched.unloaded == ["smollm2:135m"]
        cases = [
            ("/api/generate", {"model": ""}, 404, "model '' not found"),
            ("/api/generate", {"model": "nope", "prompt": "x"}, 404, "model 'nope' not found"),
            ("/api/chat", {"messages": []}, 400, "model is required"),
            ("/api/generate", {"model": "smollm2:135m", "prompt": "x", "raw": True,
                               "system": "s"}, 400,
             "raw mode does not support template, system, or context"),
            ("/api/generate", {"model": "smollm2:135m", "prompt": "x", "think": True}, 400,
             '"smollm2:135m" does not support thinking'),
            ("/api/generate", {"model": "smollm2:135m", "prompt": "x",
                               "options": {"temperature": "hot"}}, 400,
             'option "temperature" must be of type float32'),
            ("/api/generate", {"model": "smollm2:135m", "prompt": "x", "format": "yaml"}, 400,
             'invalid format: "yaml"; expected "json" or a valid JSON Schema object'),
            ("/api/generate", {"model": "embedonly", "prompt": "x"}, 400,
             '"embedonly" does not support generate'),
            ("/api/generate", {"model": "smollm2:135m", "prompt": "x", "suffix": "y"}, 400,
             "registry.ollama.ai/library/smollm2:135m does not support insert"),
            ("/api/generate", {"model": "smollm2:135m", "prompt": "x", "keep_alive": "300"},
             400, 'time: missing unit in duration "300"'),
            ("/api/embeddings", {"model": "nope", "prompt": "x"}, 404,
             'model "nope" not found, try pulling it first'),
            ("/api/embed", {"model": "smollm2:135m", "input": [1]}, 400, "invalid input type"),
        ]
        for path, body, status, message in cases:
            resp = await h.post(url + path, json=body)
            assert (resp.status_code, resp.json()) == (status, {"error": message}), body
        resp = await h.post(url + "/api/generate", content=b"")
        assert resp.json() == {"error": "missing request body"}
        resp = await h.post(url + "/v1/chat/completions", json={"model": "smollm2:135m",
                                                                 "messages": []})
        assert resp.status_code == 400
        assert resp.json()["error"]["message"] == "[] is too short - 'messages'"
        assert resp.json()["error"]["type"] == "invalid_request_error"


async def test_context_overflow_is_400(app_url: tuple[str, FakeScheduler]) -> None:
    url, _ = app_url
    long = "word " * 3000
    async with httpx.AsyncClient(timeout=60) as h:
        r = await h.post(url + "/api/generate", json={
            "model": "smollm2:135m", "prompt": long, "truncate": False, "stream": False,
            "options": {"num_predict": 1}})
        assert r.status_code == 400 and "context length" in r.json()["error"]
        opts = {"num_predict": 2, "num_ctx": 256}
        r = await h.post(url + "/api/generate", json={
            "model": "smollm2:135m", "prompt": long, "shift": False, "stream": False,
            "options": opts})
        assert r.status_code == 400 and "context length" in r.json()["error"]
        r = await h.post(url + "/api/generate", json={
            "model": "smollm2:135m", "prompt": long, "stream": False, "options": opts})
        assert r.status_code == 200, r.text
        # cut in the middle to num_ctx - (num_ctx - num_keep) / 2 tokens
        assert 100 < r.json()["prompt_eval_count"] < 256
        # chat: old turns are dropped, the system message and the last message are kept
        msgs = [{"role": "system", "content": "SYS"}] + [
            {"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i} " * 30}
            for i in range(12)] + [{"role": "user", "content": "last question"}]
        r = await h.post(url + "/api/chat", json={
            "model": "chatml", "messages": msgs, "stream": False, "options": {"num_ctx": 256},
            "_debug_render_only": True})
        text = r.json()["_debug_info"]["rendered_template"]
        assert text.startswith("<|im_start|>system\nSYS<|im_end|>")
        assert "turn 0 " not in text and "last question" in text and "turn 11 " in text


# Greedy counting never reaches an end-of-sequence token (checked: 2000 of 2000 tokens, stop_type
# "limit"), so this request keeps the runner's only slot busy for 20000 tokens (minutes on any
# CPU) unless ollamapy cancels it upstream.
ENDLESS = {"model": "smollm2:135m", "prompt": "1, 2, 3, 4, 5, 6, 7, 8,", "raw": True,
           "options": {"num_predict": 20000, "temperature": 0, "seed": 1}}


async def slot_idle_within(runner: str, seconds: float) -> float:
    """Seconds until llama-server reports its slot idle (fails after `seconds`: a liveness
    bound far below the minutes an uncancelled ENDLESS request would keep it busy)."""
    t0 = time.monotonic()
    async with httpx.AsyncClient(timeout=10) as h:
        while time.monotonic() - t0 < seconds:
            slots = (await h.get(runner + "/slots")).json()
            if not any(s.get("is_processing") for s in slots):
                return time.monotonic() - t0
            await asyncio.sleep(0.05)
    raise AssertionError(f"runner slot still busy after {seconds} s")


async def test_disconnect_frees_single_slot(app_url: tuple[str, FakeScheduler],
                                           runners: dict[str, str]) -> None:
    """A client that leaves mid-stream cancels upstream: the 1-slot runner goes idle instead of
    generating 20000 tokens nobody reads."""
    url, sched = app_url
    async with httpx.AsyncClient(timeout=60) as h:
        async with h.stream("POST", url + "/api/generate", json=ENDLESS) as resp:
            n = 0
            async for _line in resp.aiter_lines():
                n += 1
                if n >= 3:
                    slots = (await h.get(runners["gen"] + "/slots")).json()
                    assert any(s.get("is_processing") for s in slots)  # generating as we leave
                    break
    await slot_idle_within(runners["gen"], 30.0)
    assert sched.active == 0
    # a non-streaming client leaving while upstream generates (aggregating, nothing written)
    async with httpx.AsyncClient(timeout=2.0) as h:
        with pytest.raises(httpx.ReadTimeout):
            await h.post(url + "/api/generate", json={**ENDLESS, "stream": False})
    await slot_idle_within(runners["gen"], 30.0)
    assert sched.active == 0
    async with httpx.AsyncClient(timeout=30) as h:
        r = await h.post(url + "/api/generate", json={
            "model": "smollm2:135m", "prompt": "hi", "stream": False,
            "options": {"num_predict": 2}})
    assert r.status_code == 200 and r.json()["done"]


async def test_embed(app_url: tuple[str, FakeScheduler]) -> None:
    url, _ = app_url
    c = ollama.AsyncClient(host=url)
    r = await c.embed(model="smollm2:135m", input=["hello", "world"])
    assert len(r.embeddings) == 2 and len(r.embeddings[0]) == 576
    for v in r.embeddings:
        assert abs(sum(x * x for x in v) - 1) < 1e-4
    assert r.prompt_eval_count and r.prompt_eval_count >= 2
    r2 = await c.embed(model="smollm2:135m", input="hello", dimensions=8)
    assert len(r2.embeddings[0]) == 8 and abs(sum(x * x for x in r2.embeddings[0]) - 1) < 1e-4
    e = await c.embeddings(model="smollm2:135m", prompt="hello")
    assert len(e.embedding) == 576
    assert max(abs(a - b) for a, b in zip(e.embedding, r.embeddings[0], strict=True)) < 1e-4
    empty = await c.embed(model="smollm2:135m", input=[])
    assert empty.embeddings == []
    async with httpx.AsyncClient(timeout=30) as h:
        resp = await h.post(url + "/api/embed", json={
            "model": "smollm2:135m", "input": "word " * 2000, "truncate": False})
        assert resp.status_code == 400
        assert resp.json() == {"error": "the input length exceeds the context length"}
        resp = await h.post(url + "/api/embed", json={"model": "smollm2:135m",
                                                     "input": "word " * 2000})
        assert resp.status_code == 200 and resp.json()["prompt_eval_count"] <= 1024


async def test_openai_client(app_url: tuple[str, FakeScheduler]) -> None:
    url, _ = app_url
    c = openai.AsyncOpenAI(base_url=url + "/v1", api_key="ollama")
    msgs = [{"role": "user", "content": "Say hello."}]
    r = await c.chat.completions.create(model="smollm2:135m", messages=msgs, max_tokens=8,
                                        temperature=0, seed=1)
    assert r.object == "chat.completion" and r.choices[0].message.content
    assert r.choices[0].finish_reason in ("stop", "length") and r.usage.completion_tokens <= 8
    stream = await c.chat.completions.create(model="smollm2:135m", messages=msgs, max_tokens=8,
                                             temperature=0, seed=1, stream=True,
                                             stream_options={"include_usage": True})
    chunks = [ch async for ch in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens <= 8
    assert chunks[-2].choices[0].finish_reason in ("stop", "length")
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == r.choices[0].message.content
    comp = await c.completions.create(model="smollm2:135m", prompt="Once upon", max_tokens=5,
                                      temperature=0)
    assert comp.object == "text_completion" and comp.choices[0].text
    cs = [ch async for ch in await c.completions.create(
        model="smollm2:135m", prompt="Once upon", max_tokens=5, temperature=0, stream=True)]
    assert "".join(ch.choices[0].text for ch in cs) == comp.choices[0].text
    assert cs[-1].choices[0].finish_reason in ("stop", "length")
    emb = await c.embeddings.create(model="smollm2:135m", input=["a", "b"])
    assert len(emb.data) == 2 and len(emb.data[0].embedding) == 576
    b64 = await c.embeddings.create(model="smollm2:135m", input="a", encoding_format="base64")
    raw = base64.b64decode(b64.data[0].embedding)  # type: ignore[arg-type]
    floats = struct.unpack(f"<{len(raw) // 4}f", raw)
    assert len(floats) == 576 and abs(floats[0] - emb.data[0].embedding[0]) < 1e-6
    with pytest.raises(openai.NotFoundError):
        await c.chat.completions.create(model="nope", messages=msgs)


async def test_logprobs(app_url: tuple[str, FakeScheduler]) -> None:
    url, _ = app_url
    async with httpx.AsyncClient(timeout=60) as h:
        r = (await h.post(url + "/api/generate", json={
            "model": "smollm2:135m", "prompt": "Hi", "stream": False, "logprobs": True,
            "top_logprobs": 2, "options": {"num_predict": 4, "temperature": 0}})).json()
        lp = r["logprobs"]
        assert len(lp) == r["eval_count"]
        assert "".join(x["token"] for x in lp) == r["response"]
        assert all(len(x["top_logprobs"]) == 2 and x["logprob"] <= 0 for x in lp)
        r = (await h.post(url + "/api/chat", json={
            "model": "smollm2:135m", "messages": [{"role": "user", "content": "Hi"}],
            "stream": False, "logprobs": True, "options": {"num_predict": 3}})).json()
        assert len(r["logprobs"]) == r["eval_count"] and "top_logprobs" not in r["logprobs"][0]
        r = (await h.post(url + "/api/generate", json={
            "model": "smollm2:135m", "prompt": "Hi", "top_logprobs": 21})).json()
        assert r == {"error": "top_logprobs must be between 0 and 20"}
    c = openai.AsyncOpenAI(base_url=url + "/v1", api_key="ollama")
    o = await c.chat.completions.create(model="smollm2:135m", max_tokens=3, logprobs=True,
                                        top_logprobs=1,
                                        messages=[{"role": "user", "content": "Hi"}])
    assert o.choices[0].logprobs and len(o.choices[0].logprobs.content or []) == 3
