"""A scriptable stand-in for llama-server, for tests (and the relay bench).

Serves `/completion` (SSE), `/tokenize`, `/detokenize`, `/apply-template`, `/v1/embeddings`,
`/health`, `/props`, `/v1/models` on a loopback port. A test scripts what `/completion` streams
(pieces, per-request scripts, a delay between events, an error before or after the first event,
a dropped connection) and reads back what was asked (bodies, headers, paths) and how many
requests were in flight at once. Tokenizer: one token per whitespace-separated word.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from ollamapy.errors import NotFound, RunnerError
from ollamapy.runner.client import RunnerClient
from ollamapy.runner.process import free_port

# The route modules (and the engine they import) load with this module, not inside
# `inference_app`: their ~250 ms of imports would run on the test's watched event loop.
from ollamapy.server import keys, middleware
from ollamapy.server.routes import anthropic as anthropic_routes
from ollamapy.server.routes import inference as inference_routes
from ollamapy.server.routes import openai as openai_routes
from ollamapy.server.routes import rerank as rerank_routes
from ollamapy.server.routes import responses as responses_routes
from ollamapy.store.model import Model

FAST_EVENT = (b'data: {"index":0,"content":"tok","tokens":[1234],"stop":false,"id_slot":-1,'
              b'"tokens_predicted":1,"tokens_evaluated":5}\n\n')


def final_event(n: int, stop_type: str = "eos", prompt_n: int = 10,
                predicted_ms: float = 3.0) -> dict[str, Any]:
    return {"index": 0, "content": "", "tokens": [], "stop": True, "stop_type": stop_type,
            "tokens_predicted": n, "tokens_evaluated": prompt_n, "truncated": False,
            "timings": {"cache_n": 0, "prompt_n": prompt_n, "prompt_ms": 1.5,
                        "predicted_n": n, "predicted_ms": predicted_ms}}


def sse(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


@dataclass
class FakeRunner:
    """Modes: "ok"; "error_first" (a 400 context error instead of a stream); "error_mid" (one
    event, then an SSE error event); "disconnect" (one event, then the connection drops)."""

    pieces: list[str] = field(default_factory=list)
    scripts: list[list[str]] = field(default_factory=list)  # per request, used first
    mode: str = "ok"
    delay: float = 0.0  # seconds between streamed events
    fast_events: int | None = None  # bench: stream this many events as fast as possible
    props_body: dict[str, Any] = field(default_factory=dict)
    n_vocab: int = 49152
    embedding_dim: int = 4
    adds_bos: bool = True
    template: Callable[[list[dict[str, Any]]], str] | None = None
    bodies: list[dict[str, Any]] = field(default_factory=list)  # /completion bodies
    headers: list[dict[str, str]] = field(default_factory=list)  # /completion headers
    requests: Counter[str] = field(default_factory=Counter)  # path -> count
    arrivals: list[str] = field(default_factory=list)  # request paths, in arrival order
    tokenized: list[str] = field(default_factory=list)  # /tokenize contents
    applied: list[dict[str, Any]] = field(default_factory=list)  # /apply-template bodies
    rerank_bodies: list[dict[str, Any]] = field(default_factory=list)  # /v1/rerank bodies
    embed_batches: list[int] = field(default_factory=list)  # inputs per /v1/embeddings
    active: int = 0
    max_active: int = 0
    port: int = 0
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def app(self) -> web.Application:
        @web.middleware
        async def count(request: web.Request, handler: Any) -> web.StreamResponse:
            self.requests[request.path] += 1
            self.arrivals.append(request.path)
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            try:
                return await handler(request)
            finally:
                self.active -= 1

        app = web.Application(middlewares=[count])
        app.router.add_post("/completion", self._completion)
        app.router.add_post("/tokenize", self._tokenize)
        app.router.add_post("/detokenize", self._detokenize)
        app.router.add_post("/apply-template", self._apply_template)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_post("/v1/rerank", self._rerank)
        app.router.add_get("/health", self._health)
        app.router.add_get("/props", self._props)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/", self._health)
        return app

    async def start(self, port: int = 0) -> FakeRunner:
        self.port = port or free_port()
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ------------------------------------------------------------------ handlers

    async def _completion(self, request: web.Request) -> web.StreamResponse:
        body = json.loads(await request.read())
        self.bodies.append(body)
        self.headers.append({k.lower(): v for k, v in request.headers.items()})
        if self.fast_events is not None:
            return await self._fast(request, body)
        if self.mode == "error_first":
            return web.json_response({"error": {
                "code": 400, "type": "exceed_context_size_error", "n_ctx": 8,
                "message": "request (9 tokens) exceeds the available context size"}},
                status=400)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        if self.mode in ("error_mid", "disconnect"):
            await resp.write(sse({"content": "a", "tokens": [1], "stop": False}))
            if self.mode == "disconnect":
                assert request.transport is not None
                request.transport.close()
                return resp
            await resp.write(b'data: {"error": {"code": 500, "message": "boom"}}\n\n')
            return resp
        pieces = self.scripts.pop(0) if self.scripts else self.pieces
        for p in pieces:
            if self.delay:
                await asyncio.sleep(self.delay)
            await resp.write(sse({"content": p, "tokens": [1], "stop": False}))
        await resp.write(sse(final_event(len(pieces))))
        return resp

    async def _fast(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        assert self.fast_events is not None
        n = min(int(body.get("n_predict", self.fast_events)), self.fast_events)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        if n < 64:  # latency probe: the first event goes out on its own, at once
            for _ in range(n):
                await resp.write(FAST_EVENT)
        else:
            batch = FAST_EVENT * 64
            for _ in range(n // 64):
                await resp.write(batch)
            for _ in range(n % 64):
                await resp.write(FAST_EVENT)
        with contextlib.suppress(ConnectionError):  # the proxy may close after the stop event
            await resp.write(sse(final_event(n, "limit", 5, 1000.0)))
            await resp.write_eof()
        return resp

    def tokens(self, text: str, add_special: bool) -> list[int]:
        ids = [10 + i for i in range(len(text.split()))]
        return [1, *ids] if add_special and self.adds_bos else ids

    async def _tokenize(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.tokenized.append(body["content"])
        return web.json_response({"tokens": self.tokens(body["content"],
                                                        bool(body.get("add_special")))})

    async def _detokenize(self, request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"content": " ".join("w" for _ in body["tokens"])})

    async def _apply_template(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.applied.append(body)
        msgs = body["messages"]
        text = (self.template(msgs) if self.template is not None else
                "".join(f"[{m['role']}]{m['content']}" for m in msgs) + "[assistant]")
        return web.json_response({"prompt": text})

    async def _embeddings(self, request: web.Request) -> web.Response:
        body = await request.json()
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        self.embed_batches.append(len(inputs))
        if self.delay:
            await asyncio.sleep(self.delay)
        data = [{"object": "embedding", "index": i,
                 "embedding": [float(len(t) + 1)] + [0.5] * (self.embedding_dim - 1)}
                for i, t in enumerate(inputs)]
        n = sum(len(self.tokens(t, True)) for t in inputs)
        return web.json_response({"object": "list", "data": data,
                                  "usage": {"prompt_tokens": n, "total_tokens": n}})

    async def _rerank(self, request: web.Request) -> web.Response:
        """llama-server's reranking answer; a document scores the share of its words that are
        in the query (a stand-in for the model), sorted best first, cut to top_n."""
        body = await request.json()
        self.rerank_bodies.append(body)
        query = set(body["query"].split())
        docs = body["documents"]
        scores = [(i, len(query & set(d.split())) / max(1, len(d.split())))
                  for i, d in enumerate(docs)]
        scores.sort(key=lambda x: -x[1])
        n = sum(len(self.tokens(body["query"] + " " + d, True)) for d in docs)
        return web.json_response({
            "model": "fake", "object": "list", "usage": {"prompt_tokens": n, "total_tokens": n},
            "results": [{"index": i, "relevance_score": s}
                        for i, s in scores[:int(body.get("top_n", len(docs)))]]})

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _props(self, request: web.Request) -> web.Response:
        return web.json_response(self.props_body)

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"data": [{"id": "fake", "meta": {"n_vocab": self.n_vocab}}]})


@dataclass
class FakeLease:
    """What `Scheduler.lease` yields, pointing at one runner (tests' stand-in)."""

    client: RunnerClient
    model: Model
    props: dict[str, Any] = field(default_factory=dict)
    num_ctx: int = 4096
    load_duration: float = 0.0
    failures: list[BaseException] = field(default_factory=list)

    def fail(self, exc: BaseException) -> RunnerError:
        self.failures.append(exc)
        return RunnerError(str(exc))


class FakeStore:
    def __init__(self, models: dict[str, Model]) -> None:
        self.models = models

    def resolve(self, name: str) -> Model:
        key = name if ":" in name else f"{name}:latest"
        if key not in self.models:
            raise NotFound(f"model '{name}' not found")
        return self.models[key]

    def cached(self, name: str) -> Model | None:
        return self.models.get(name if ":" in name else f"{name}:latest")


class FakeScheduler:
    """Leases on fixed runner URLs ("gen", and "emb" for embedding leases when given); records
    each lease's options and how many are held."""

    def __init__(self, session: aiohttp.ClientSession, urls: dict[str, str],
                 props: dict[str, dict[str, Any]] | None = None,
                 num_ctx: dict[str, int] | None = None, load_duration: float = 0.0) -> None:
        self.session = session
        self.urls = urls
        self.props = props or {}
        self.num_ctx = num_ctx or {}
        self.load_duration = load_duration
        self.active = 0
        self.unloaded: list[str] = []
        self.calls: list[dict[str, Any]] = []
        self.leases: list[FakeLease] = []

    @asynccontextmanager
    async def lease(self, model: Model, options: Mapping[str, Any] | None,
                    keep_alive: float | None, *, embedding: bool = False
                    ) -> AsyncIterator[FakeLease]:
        kind = "emb" if embedding and "emb" in self.urls else "gen"
        opts = dict(options or {})
        self.calls.append({"options": opts, "keep_alive": keep_alive, "embedding": embedding})
        ctx = self.num_ctx.get(kind, 4096)
        if kind == "gen" and opts.get("num_ctx"):
            ctx = min(int(opts["num_ctx"]), ctx)
        props = dict(self.props.get(kind, {}))
        if model.projector_paths and "media_marker" not in props:
            props["media_marker"] = "<__media__>"
        lease = FakeLease(RunnerClient(self.session, self.urls[kind]), model, props, ctx,
                          self.load_duration)
        self.leases.append(lease)
        self.active += 1
        try:
            yield lease
        finally:
            self.active -= 1

    async def unload(self, model: Model) -> bool:
        self.unloaded.append(model.short_name)
        return True


def fake_model(name: str, template: str | None = None,
               caps: tuple[str, ...] = ("completion",), path: Path | None = None,
               **kw: Any) -> Model:
    """A store entry for tests (`path`: a real GGUF when a real runner serves it)."""
    return Model(name=f"registry.ollama.ai/library/{name}", short_name=name,
                 digest=kw.pop("digest", "0" * 64), model_path=path or Path("/nonexistent.gguf"),
                 size=path.stat().st_size if path else 0, modified_at=datetime.now(UTC),
                 template=template, capabilities=caps, **kw)


@asynccontextmanager
async def inference_app(store: FakeStore, scheduler: FakeScheduler) -> AsyncIterator[str]:
    """The native, OpenAI, Anthropic and Responses inference routes (real middleware) over a
    fake store and scheduler, served on a loopback port -> its base URL."""
    app = web.Application(middlewares=[middleware.errors])
    app[keys.STORE_KEY] = store  # type: ignore[arg-type]
    app[keys.SCHEDULER_KEY] = scheduler  # type: ignore[arg-type]
    inference_routes.setup(app)
    openai_routes.setup(app)
    anthropic_routes.setup(app)
    responses_routes.setup(app)
    rerank_routes.setup(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
