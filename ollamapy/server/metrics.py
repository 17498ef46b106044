"""`GET /metrics`: Prometheus text exposition built with `prometheus_client`.

Three sources, all bounded in cardinality:
- counters and histograms fed as requests run (the middleware here; `observe_first_token` and
  `count_tokens` for the engine; `observe_load` / `observe_runner_crash` for the scheduler);
- scheduler state read at scrape time by a Collector (queue depth, loaded models, memory);
- each loaded runner's own llama-server `/metrics` (runners start with `--metrics`), fetched at
  scrape time and re-exported as `ollamapy_runner_*` with a `model` label.

Labels never carry a prompt, a key or a client-chosen string: the route label is the router's
path template, the model label is a model name the store resolved (or that is loaded), anything
else is "other"; at most MAX_MODEL_LABELS distinct model names ever become labels.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, cast

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

if TYPE_CHECKING:
    from ollamapy.scheduler import Scheduler
    from ollamapy.store.model import Model

log = logging.getLogger("ollamapy.metrics")

OTHER = "other"
MAX_MODEL_LABELS = 256
RUNNER_SCRAPE_TIMEOUT_S = 2.0
RUNNER_METRICS_MAX_BYTES = 1 << 20
# /metrics is open without a key when OLLAMAPY_METRICS_AUTH=none (security.py reads this flag).
PUBLIC_HANDLER_ATTR = "ollamapy_public"

# Process-wide: one server per process; tests compare deltas.
REGISTRY = CollectorRegistry(auto_describe=True)

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                    120.0, 300.0)
_LOAD_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)

REQUESTS = Counter("ollamapy_requests", "HTTP requests by API family, route, model and status",
                   ("family", "route", "model", "status"), registry=REGISTRY)
REQUEST_SECONDS = Histogram("ollamapy_request_duration_seconds",
                            "Time from request to the end of the response",
                            ("family", "route", "model"), buckets=_LATENCY_BUCKETS,
                            registry=REGISTRY)
REJECTED = Counter("ollamapy_requests_rejected",
                   "Requests refused with 503 (queue full or shutting down)", ("family",),
                   registry=REGISTRY)
TTFT_SECONDS = Histogram("ollamapy_time_to_first_token_seconds",
                         "Time from request to the first generated token",
                         ("family", "model"), buckets=_LATENCY_BUCKETS, registry=REGISTRY)
PROMPT_TOKENS = Counter("ollamapy_prompt_tokens", "Prompt tokens evaluated", ("model",),
                        registry=REGISTRY)
GENERATED_TOKENS = Counter("ollamapy_generated_tokens", "Tokens generated", ("model",),
                           registry=REGISTRY)
LOAD_SECONDS = Histogram("ollamapy_model_load_duration_seconds",
                         "Time to start a runner and load a model", ("model",),
                         buckets=_LOAD_BUCKETS, registry=REGISTRY)
LOAD_FAILURES = Counter("ollamapy_model_load_failures", "Model loads that failed", ("model",),
                        registry=REGISTRY)
RUNNER_CRASHES = Counter("ollamapy_runner_crashes",
                         "Runners that exited unexpectedly or stopped answering /health",
                         ("model",), registry=REGISTRY)
RUNNER_RESTARTS = Counter("ollamapy_runner_restarts",
                          "Runners started again for a model whose previous runner crashed",
                          ("model",), registry=REGISTRY)

_known_models: set[str] = set()
_crashed: set[str] = set()
REQUEST_MODEL = web.RequestKey("metrics_model", str)
REQUEST_START = web.RequestKey("metrics_start", float)
FAMILY = ("ollama", "openai", "anthropic", "other")


# ---------------------------------------------------------------- pure label decisions

def route_family(path: str) -> str:
    """The API family a path belongs to (bounded: one of FAMILY)."""
    if path.startswith("/api/") or path in ("/", "/api"):
        return "ollama"
    if path.startswith("/v1/messages"):
        return "anthropic"
    if path.startswith("/v1/"):
        return "openai"
    return "other"


def route_label(request: web.Request) -> str:
    """The matched route's path template (`/api/blobs/{digest}`), never the raw path."""
    info = request.match_info
    route = getattr(info, "route", None)
    resource = getattr(route, "resource", None)
    if resource is None or getattr(info, "http_exception", None) is not None:
        return OTHER
    return str(resource.canonical)


def remember_model(name: str) -> str:
    """Make a store-resolved model name usable as a label (bounded by MAX_MODEL_LABELS)."""
    if name in _known_models:
        return name
    if not name or len(_known_models) >= MAX_MODEL_LABELS:
        return OTHER
    _known_models.add(name)
    return name


def model_label(name: str | None) -> str:
    """A label for `name`: itself if the store resolved it before (or it is loaded), else other."""
    return name if name and name in _known_models else OTHER


# ---------------------------------------------------------------- what other modules call

def set_request_model(request: web.Request, model: Model) -> None:
    """Route handlers call this once the store resolved the request's model."""
    request[REQUEST_MODEL] = remember_model(model.short_name)


def record_usage(request: web.Request, prompt: int, generated: int) -> None:
    """Route handlers call this when a generation ends: token counters and the access log."""
    from ollamapy.server.access import TOKENS

    request[TOKENS] = (prompt, generated)
    count_tokens(request.get(REQUEST_MODEL, OTHER), prompt, generated)


def _has_output(chunk: dict[str, Any]) -> bool:
    if chunk.get("response") or chunk.get("thinking"):
        return True
    msg = chunk.get("message")
    return isinstance(msg, dict) and bool(msg.get("content") or msg.get("thinking")
                                          or msg.get("tool_calls"))


async def observe_chunks(request: web.Request, chunks: AsyncGenerator[Any, None]
                         ) -> AsyncGenerator[Any, None]:
    """Pass native (Ollama-shaped) chunks through, timing the first token and counting the
    final chunk's tokens. Closing this generator closes `chunks` (cancels upstream)."""
    start = request.get(REQUEST_START, time.monotonic())
    first = True
    try:
        async for ch in chunks:
            if isinstance(ch, dict):
                if first and _has_output(ch):
                    first = False
                    observe_first_token(route_family(request.path),
                                        request.get(REQUEST_MODEL, OTHER),
                                        time.monotonic() - start)
                if ch.get("done"):
                    record_usage(request, int(ch.get("prompt_eval_count") or 0),
                                 int(ch.get("eval_count") or 0))
            yield ch
    finally:
        await chunks.aclose()


def observe_first_token(family: str, model: str, seconds: float) -> None:
    """The engine calls this when the first token of a response is out."""
    fam = family if family in FAMILY else "other"
    TTFT_SECONDS.labels(fam, model_label(model)).observe(max(0.0, seconds))


def count_tokens(model: str, prompt: int, generated: int) -> None:
    """The engine calls this once per finished generation (from its Done event)."""
    label = model_label(model)
    if prompt > 0:
        PROMPT_TOKENS.labels(label).inc(prompt)
    if generated > 0:
        GENERATED_TOKENS.labels(label).inc(generated)


def observe_load(model: str, seconds: float, ok: bool) -> None:
    """The scheduler calls this when a load ends (runner ready, or failed)."""
    label = remember_model(model)
    if ok:
        LOAD_SECONDS.labels(label).observe(max(0.0, seconds))
        if model in _crashed:
            _crashed.discard(model)
            RUNNER_RESTARTS.labels(label).inc()
    else:
        LOAD_FAILURES.labels(label).inc()


def observe_runner_crash(model: str) -> None:
    """The scheduler calls this when a runner exits unexpectedly or fails its health check."""
    _crashed.add(model)
    RUNNER_CRASHES.labels(remember_model(model)).inc()


# ---------------------------------------------------------------- middleware

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def track(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count every request and time it to the end of its (possibly streamed) response."""
    start = request[REQUEST_START] = time.monotonic()
    status = 500
    try:
        resp = await handler(request)
        status = resp.status
        return resp
    except web.HTTPException as e:
        status = e.status
        raise
    except asyncio.CancelledError:
        status = 499  # client went away (nginx's convention)
        raise
    finally:
        fam = route_family(request.path)
        route = route_label(request)
        model = request.get(REQUEST_MODEL, OTHER)
        REQUESTS.labels(fam, route, model, str(status)).inc()
        REQUEST_SECONDS.labels(fam, route, model).observe(time.monotonic() - start)
        if status == 503:
            REJECTED.labels(fam).inc()


# ---------------------------------------------------------------- scrape-time collectors

class SchedulerCollector:
    """Scheduler state at scrape time, plus the runners' own metrics fetched just before."""

    def __init__(self, scheduler: Scheduler | None,
                 runner_families: Iterable[tuple[str, list[Metric]]] = ()) -> None:
        self._scheduler = scheduler
        self._runner_families = list(runner_families)

    def collect(self) -> Iterator[Metric]:
        queued = GaugeMetricFamily("ollamapy_queue_depth", "Requests waiting for a runner slot")
        loaded = GaugeMetricFamily("ollamapy_models_loaded", "Models loaded or loading")
        memory = GaugeMetricFamily("ollamapy_model_memory_bytes",
                                   "Memory a loaded model uses, by kind (ram, vram)",
                                   labels=("model", "memory"))
        s = self._scheduler
        statuses = s.ps() if s is not None else []
        queued.add_metric([], float(s.queue_depth if s is not None else 0))
        loaded.add_metric([], float(len(statuses)))
        for st in statuses:
            label = remember_model(st.model.short_name)
            memory.add_metric([label, "ram"], float(max(0, st.size - st.size_vram)))
            memory.add_metric([label, "vram"], float(st.size_vram))
        yield queued
        yield loaded
        yield memory
        yield from merge_runner_metrics(self._runner_families)


class _Combined:
    def __init__(self, *collectors: CollectorRegistry | SchedulerCollector) -> None:
        self._collectors = collectors

    def collect(self) -> Iterator[Metric]:
        for c in self._collectors:
            yield from c.collect()


def runner_metric_name(name: str) -> str:
    """`llamacpp:prompt_tokens_total` -> `ollamapy_runner_prompt_tokens_total`."""
    base = name.split(":", 1)[1] if ":" in name else name
    safe = "".join(c if c.isalnum() or c == "_" else "_" for c in base)
    return f"ollamapy_runner_{safe}"


def merge_runner_metrics(per_model: Iterable[tuple[str, list[Metric]]]) -> Iterator[Metric]:
    """One family per runner metric name, a `model` label on each sample."""
    merged: dict[str, Metric] = {}
    for model, families in per_model:
        for fam in families:
            name = runner_metric_name(fam.name)
            out = merged.get(name)
            if out is None:
                out = merged[name] = Metric(name, fam.documentation, fam.type)
            for s in fam.samples:
                sample_name = name + s.name[len(fam.name):]
                out.add_sample(sample_name, {**s.labels, "model": model}, s.value, s.timestamp)
    yield from merged.values()


def parse_runner_metrics(text: str) -> list[Metric]:
    """A runner's exposition text -> families; a garbled page is dropped, not fatal."""
    try:
        return list(text_string_to_metric_families(text))
    except (ValueError, TypeError) as e:
        log.debug("unparsable runner metrics: %s", e)
        return []


async def _fetch_runner(session: aiohttp.ClientSession, url: str) -> str | None:
    try:
        async with session.get(f"{url}/metrics",
                               timeout=aiohttp.ClientTimeout(total=RUNNER_SCRAPE_TIMEOUT_S)) as r:
            if r.status != 200:
                return None
            body = await r.content.read(RUNNER_METRICS_MAX_BYTES)
            return body.decode("utf-8", "replace")
    except (aiohttp.ClientError, TimeoutError, OSError):
        return None


async def runner_metrics(scheduler: Scheduler) -> list[tuple[str, list[Metric]]]:
    session = scheduler.session
    targets = scheduler.runner_urls()
    if session is None or not targets:
        return []
    texts = await asyncio.gather(*(_fetch_runner(session, url) for _, url in targets))
    out = []
    for (model, _), text in zip(targets, texts, strict=True):
        if text:
            out.append((remember_model(model), parse_runner_metrics(text)))
    return out


async def metrics_handler(request: web.Request) -> web.Response:
    from ollamapy.server.keys import SCHEDULER_KEY  # keys -> scheduler -> this module

    scheduler = request.app.get(SCHEDULER_KEY)
    runners = await runner_metrics(scheduler) if scheduler is not None else []
    combined = _Combined(REGISTRY, SchedulerCollector(scheduler, runners))
    body = generate_latest(cast(CollectorRegistry, combined))  # it only calls .collect()
    resp = web.Response(body=body)
    resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return resp


def setup(app: web.Application, *, public: bool = False) -> None:
    """Register /metrics. `public`: served without an API key even when keys are set."""
    async def handler(request: web.Request) -> web.Response:
        return await metrics_handler(request)

    setattr(handler, PUBLIC_HANDLER_ATTR, public)
    app.router.add_get("/metrics", handler)
