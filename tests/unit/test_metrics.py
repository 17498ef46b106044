"""GET /metrics: scraped with prometheus_client's own parser; counters move by what happened."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from ollamapy.config import load_settings
from ollamapy.inference.events import Done, Event, TextDelta
from ollamapy.scheduler import RunnerStatus
from ollamapy.server import metrics
from ollamapy.server.app import create_app
from ollamapy.store.model import Model
from tests.fake_runner import FakeRunner, FakeScheduler, FakeStore, fake_model

pytestmark = pytest.mark.timeout(30)

LLAMA_METRICS = """# HELP llamacpp:prompt_tokens_total Number of prompt tokens processed.
# TYPE llamacpp:prompt_tokens_total counter
llamacpp:prompt_tokens_total 57
# HELP llamacpp:requests_processing Number of requests processing.
# TYPE llamacpp:requests_processing gauge
llamacpp:requests_processing 1
"""


@functools.lru_cache(maxsize=16)
def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    # parsed once per scrape: re-parsing the whole exposition for every lookup cost the test's
    # loop up to 0.7 s of CPU (the loop watchdog's trip, not the server's)
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
async def make_client(tmp_path: Path) -> AsyncIterator:
    clients: list[TestClient] = []

    async def make(env: dict[str, str]) -> TestClient:
        app = create_app(load_settings({"OLLAMA_MODELS": str(tmp_path / "models"), **env}))
        c = TestClient(TestServer(app, host="127.0.0.1"))
        await c.start_server()
        clients.append(c)
        return c

    yield make
    for c in clients:
        await c.close()


async def scrape(c: TestClient, **headers: str) -> str:
    r = await c.get("/metrics", headers=headers)
    assert r.status == 200, await r.text()
    assert r.headers["Content-Type"].startswith("text/plain; version=")
    return await r.text()


async def test_requests_counted_by_family_route_status(make_client) -> None:
    c = await make_client({})
    before = await scrape(c)
    for _ in range(3):
        assert (await c.get("/api/tags")).status == 200
    r = await c.post("/api/generate", json={"model": "no-such-model", "prompt": "secret words"})
    assert r.status == 404
    assert (await c.get("/v1/models")).status == 200
    assert (await c.get("/nope/" + "x" * 50)).status == 404
    after = await scrape(c)

    def delta(**labels: str) -> float:
        return (value(after, "ollamapy_requests_total", **labels)
                - value(before, "ollamapy_requests_total", **labels))

    assert delta(family="ollama", route="/api/tags", model="other", status="200") == 3
    assert delta(family="ollama", route="/api/generate", model="other", status="404") == 1
    assert delta(family="openai", route="/v1/models", model="other", status="200") == 1
    # An unmatched path is "other", never the raw path.
    assert delta(family="other", route="other", model="other", status="404") == 1
    count = "ollamapy_request_duration_seconds_count"
    assert (value(after, count, family="ollama", route="/api/tags", model="other")
            - value(before, count, family="ollama", route="/api/tags", model="other")) == 3
    # Nothing the client sent becomes a label.
    assert "no-such-model" not in after and "secret" not in after and "xxxxx" not in after
    assert value(after, "ollamapy_queue_depth") == 0
    assert value(after, "ollamapy_models_loaded") == 0


async def test_metrics_need_a_key_when_keys_are_set(make_client) -> None:
    c = await make_client({"OLLAMA_API_KEYS": "k1"})
    assert (await c.get("/metrics")).status == 401
    text = await scrape(c, Authorization="Bearer k1")
    assert "k1" not in text
    assert value(text, "ollamapy_requests_total", family="other", route="/metrics",
                 model="other", status="401") >= 1


async def test_metrics_auth_none_opens_only_metrics(make_client) -> None:
    c = await make_client({"OLLAMA_API_KEYS": "k1", "OLLAMAPY_METRICS_AUTH": "none"})
    await scrape(c)
    assert (await c.get("/api/tags")).status == 401


def test_bad_metrics_auth_is_a_config_error() -> None:
    from ollamapy.errors import ConfigError

    with pytest.raises(ConfigError, match="OLLAMAPY_METRICS_AUTH"):
        load_settings({"OLLAMAPY_METRICS_AUTH": "maybe"})


def test_route_family() -> None:
    assert metrics.route_family("/api/chat") == "ollama"
    assert metrics.route_family("/") == "ollama"
    assert metrics.route_family("/v1/chat/completions") == "openai"
    assert metrics.route_family("/v1/messages") == "anthropic"
    assert metrics.route_family("/metrics") == "other"


def test_model_labels_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "_known_models", set())
    assert metrics.model_label("never-resolved") == "other"
    assert metrics.remember_model("a:1") == "a:1"
    assert metrics.model_label("a:1") == "a:1"
    for i in range(metrics.MAX_MODEL_LABELS):
        metrics.remember_model(f"m{i}")
    assert metrics.remember_model("one-too-many") == "other"
    assert len(metrics._known_models) == metrics.MAX_MODEL_LABELS


def test_tokens_ttft_load_and_crash_counters() -> None:
    metrics.remember_model("tok:1")
    text0 = _render()
    metrics.count_tokens("tok:1", 7, 11)
    metrics.count_tokens("unknown-model", 1, 1)
    metrics.observe_first_token("openai", "tok:1", 0.2)
    metrics.observe_load("tok:1", 1.5, ok=True)
    metrics.observe_load("tok:1", 0.1, ok=False)
    metrics.observe_runner_crash("tok:1")
    metrics.observe_load("tok:1", 1.0, ok=True)  # the reload after the crash: a restart
    text = _render()

    def d(name: str, **labels: str) -> float:
        return value(text, name, **labels) - value(text0, name, **labels)

    assert d("ollamapy_prompt_tokens_total", model="tok:1") == 7
    assert d("ollamapy_generated_tokens_total", model="tok:1") == 11
    assert d("ollamapy_generated_tokens_total", model="other") == 1
    assert d("ollamapy_time_to_first_token_seconds_count", family="openai", model="tok:1") == 1
    assert d("ollamapy_time_to_first_token_seconds_sum", family="openai",
             model="tok:1") == pytest.approx(0.2)
    assert d("ollamapy_model_load_duration_seconds_count", model="tok:1") == 2
    assert d("ollamapy_model_load_failures_total", model="tok:1") == 1
    assert d("ollamapy_runner_crashes_total", model="tok:1") == 1
    assert d("ollamapy_runner_restarts_total", model="tok:1") == 1


def _render(scheduler: Any = None, runners: list[Any] | None = None) -> str:
    from prometheus_client.exposition import generate_latest

    combined = metrics._Combined(metrics.REGISTRY,
                                 metrics.SchedulerCollector(scheduler, runners or []))
    return generate_latest(combined).decode()  # type: ignore[arg-type]


def _model(name: str) -> Model:
    return Model(name=f"registry.ollama.ai/library/{name}", short_name=name, digest="d" * 64,
                 model_path=Path("/m"), size=100, modified_at=datetime.now().astimezone())


def test_scheduler_state_and_runner_metrics_reexported() -> None:
    st = RunnerStatus(model=_model("loaded:1"), size=1000, size_vram=300,
                      expires_at=datetime.now().astimezone(), context_length=2048, pid=1,
                      state="ready")
    sched = SimpleNamespace(ps=lambda: [st], queue_depth=4)
    runner = [("loaded:1", metrics.parse_runner_metrics(LLAMA_METRICS)),
              ("other:2", metrics.parse_runner_metrics("garbage{{{ 1\n"))]
    text = _render(sched, runner)
    assert value(text, "ollamapy_queue_depth") == 4
    assert value(text, "ollamapy_models_loaded") == 1
    assert value(text, "ollamapy_model_memory_bytes", model="loaded:1", memory="vram") == 300
    assert value(text, "ollamapy_model_memory_bytes", model="loaded:1", memory="ram") == 700
    assert value(text, "ollamapy_runner_prompt_tokens_total", model="loaded:1") == 57
    assert value(text, "ollamapy_runner_requests_processing", model="loaded:1") == 1


async def test_event_watcher_times_first_token_and_counts_done(make_client) -> None:
    metrics.remember_model("chunky:1")
    seen: list[Any] = []

    async def events() -> AsyncIterator[Event]:
        yield TextDelta("")
        yield TextDelta("Hi")
        yield Done(prompt_eval_count=5, eval_count=3)

    async def handler(request: web.Request) -> web.Response:
        request[metrics.REQUEST_MODEL] = "chunky:1"
        watch = metrics.event_watcher(request)
        async for ev in events():
            watch(ev)
            seen.append(ev)
        return web.json_response({})

    app = web.Application(middlewares=[metrics.track])
    app.router.add_post("/api/generate", handler)
    metrics.setup(app)
    async with TestClient(TestServer(app, host="127.0.0.1")) as c:
        before = await (await c.get("/metrics")).text()
        assert (await c.post("/api/generate")).status == 200
        after = await (await c.get("/metrics")).text()
    assert len(seen) == 3

    def d(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert d("ollamapy_time_to_first_token_seconds_count", family="ollama", model="chunky:1") == 1
    assert d("ollamapy_prompt_tokens_total", model="chunky:1") == 5
    assert d("ollamapy_generated_tokens_total", model="chunky:1") == 3
    assert d("ollamapy_requests_total", family="ollama", route="/api/generate",
             model="chunky:1", status="200") == 1


async def test_every_api_family_is_metered_through_the_real_routes() -> None:
    """Native, OpenAI, Anthropic and Responses routes (streamed and whole) all pass through
    server/metered.py: first-token time per family, tokens and the store-resolved model label."""
    from ollamapy.server import keys, middleware
    from ollamapy.server.routes import anthropic, inference, openai, responses

    up = await FakeRunner(pieces=["Hi", " there"]).start()  # 2 tokens; prompt_n 10 per request
    name = "metered:latest"
    store = FakeStore({name: fake_model(name, "{{ range .Messages }}<turn>{{ .Content }}"
                                        "{{ end }}<turn>", caps=("completion",))})
    msgs = [{"role": "user", "content": "hi"}]
    calls: list[tuple[str, str, dict[str, Any]]] = [
        ("ollama", "/api/generate", {"model": "metered", "prompt": "hi", "stream": False}),
        ("ollama", "/api/chat", {"model": "metered", "messages": msgs}),
        ("openai", "/v1/chat/completions", {"model": "metered", "messages": msgs}),
        ("openai", "/v1/chat/completions", {"model": "metered", "messages": msgs,
                                            "stream": True}),
        ("openai", "/v1/completions", {"model": "metered", "prompt": "hi"}),
        ("openai", "/v1/responses", {"model": "metered", "input": "hi"}),
        ("openai", "/v1/responses", {"model": "metered", "input": "hi", "stream": True}),
        ("anthropic", "/v1/messages", {"model": "metered", "max_tokens": 8, "messages": msgs}),
        ("anthropic", "/v1/messages", {"model": "metered", "max_tokens": 8, "messages": msgs,
                                       "stream": True}),
    ]
    try:
        async with aiohttp.ClientSession() as session:
            app = web.Application(middlewares=[metrics.track, middleware.errors])
            app[keys.STORE_KEY] = store  # type: ignore[arg-type]
            app[keys.SCHEDULER_KEY] = FakeScheduler(session, {"gen": up.url})  # type: ignore[arg-type]
            for family in (inference, openai, anthropic, responses):
                family.setup(app)
            metrics.setup(app)
            async with TestClient(TestServer(app, host="127.0.0.1")) as c:
                before = await (await c.get("/metrics")).text()
                for _, path, body in calls:
                    r = await c.post(path, json=body)
                    assert r.status == 200, (path, await r.text())
                    await r.read()
                r = await c.post("/api/embed", json={"model": "metered", "input": ["a b", "c"]})
                assert r.status == 200, await r.text()
                after = await (await c.get("/metrics")).text()
    finally:
        await up.close()

    def d(metric: str, **labels: str) -> float:
        return value(after, metric, **labels) - value(before, metric, **labels)

    for fam in ("ollama", "openai", "anthropic"):
        n = sum(1 for f, _, _ in calls if f == fam)
        assert d("ollamapy_time_to_first_token_seconds_count", family=fam, model=name) == n, fam
    for _, path, _ in calls:
        assert d("ollamapy_requests_total", family=metrics.route_family(path), route=path,
                 model=name, status="200") >= 1, path
    embed_tokens = 3 + 2  # the fake tokenizer: BOS + one per word, per input
    assert d("ollamapy_prompt_tokens_total", model=name) == 10 * len(calls) + embed_tokens
    assert d("ollamapy_generated_tokens_total", model=name) == 2 * len(calls)


async def test_503_counts_as_rejected() -> None:
    async def busy(request: web.Request) -> web.Response:
        return web.json_response({"error": "server busy, please try again."}, status=503)

    app = web.Application(middlewares=[metrics.track])
    app.router.add_post("/v1/chat/completions", busy)
    metrics.setup(app)
    async with TestClient(TestServer(app, host="127.0.0.1")) as c:
        before = await (await c.get("/metrics")).text()
        for _ in range(2):
            assert (await c.post("/v1/chat/completions")).status == 503
        after = await (await c.get("/metrics")).text()
    assert (value(after, "ollamapy_requests_rejected_total", family="openai")
            - value(before, "ollamapy_requests_rejected_total", family="openai")) == 2
