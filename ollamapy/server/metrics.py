"""`GET /metrics`: Prometheus text exposition built with `prometheus_client`.

Three sources, all bounded in cardinality:
- counters and histograms fed as requests run (the middleware here; `event_watcher` on the
  engine's event stream, through server/metered.py, for every API family; `OBSERVER`, the
  scheduler's observer, for loads and crashes);
- scheduler state read at scrape time by a Collector (queue depth, loaded models, memory);
- each loaded runner's own llama-server `/metrics` (runners start with `--metrics`), fetched at
  scrape time with the runner's key and re-exported as `ollamapy_runner_*` with a `model` label.

Labels never carry a prompt, a key or a client-chosen string: the route label is the router's
path template, the model label is a model name the store resolved (or that is loaded), anything
else is "other"; at most MAX_MODEL_LABELS distinct model names ever become labels.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Protocol, cast

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ollamapy.inference.events import Done, Event, TextDelta, ThinkingDelta, ToolCallEvent
from ollamapy.logs import kv

if TYPE_CHECKING:
    from ollamapy.runner.client import RunnerClient
    from ollamapy.scheduler import RunnerStatus
    from ollamapy.store.model import Model

log = logging.getLogger("ollamapy.metrics")

OTHER = "other"
MAX_MODEL_LABELS = 256
RUNNER_SCRAPE_TIMEOUT_S = 2.0
RUNNER_METRICS_MAX_BYTES = 1 << 20

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
# (prompt, generated) tokens of the request's generation, for the access log (record_usage).
TOKENS = web.RequestKey("access_tokens", tuple)
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
    """Once the store resolved the request's model (server/metered.py's store view)."""
    request[REQUEST_MODEL] = remember_model(model.short_name)


def record_usage(request: web.Request, prompt: int, generated: int) -> None:
    """A generation (or embedding) ended: token counters and the access log's counts."""
    request[TOKENS] = (prompt, generated)
    count_tokens(request.get(REQUEST_MODEL, OTHER), prompt, generated)


def _is_output(ev: Event) -> bool:
    if isinstance(ev, TextDelta | ThinkingDelta):
        return bool(ev.text)
    return isinstance(ev, ToolCallEvent)


def event_watcher(request: web.Request) -> Callable[[Event], None]:
    """A per-request hook for the engine's events (engine.run's `watch`): times the first
    generated token and counts the Done's tokens, for every API family (server/metered.py).
    A hook, not a wrapping generator: nothing more to resume per streamed token."""
    start = request.get(REQUEST_START, time.monotonic())
    first = True

    def watch(ev: Event) -> None:
        nonlocal first
        if first and _is_output(ev):
            first = False
            observe_first_token(route_family(request.path),
                                request.get(REQUEST_MODEL, OTHER), time.monotonic() - start)
        elif isinstance(ev, Done):
            record_usage(request, ev.prompt_eval_count, ev.eval_count)

    return watch


def observe_first_token(family: str, model: str, seconds: float) -> None:
    """The first token of a response is out (`event_watcher`)."""
    fam = family if family in FAMILY else "other"
    TTFT_SECONDS.labels(fam, model_label(model)).observe(max(0.0, seconds))


def count_tokens(model: str, prompt: int, generated: int) -> None:
    """Once per finished generation (`record_usage`, from its Done event)."""
    label = model_label(model)
    if prompt > 0:
        PROMPT_TOKENS.labels(label).inc(prompt)
    if generated > 0:
        GENERATED_TOKENS.labels(label).inc(generated)


def observe_load(model: str, seconds: float, ok: bool) -> None:
    """A load ended (runner ready, or failed)."""
    label = remember_model(model)
    if ok:
        LOAD_SECONDS.labels(label).observe(max(0.0, seconds))
        if model in _crashed:
            _crashed.discard(model)
            RUNNER_RESTARTS.labels(label).inc()
    else:
        LOAD_FAILURES.labels(label).inc()


def observe_runner_crash(model: str) -> None:
    """A runner exited unexpectedly or failed its health check."""
    _crashed.add(model)
    RUNNER_CRASHES.labels(remember_model(model)).inc()


class SchedulerMetrics:
    """The scheduler's observer (scheduler/observer.py): loads and crashes become metrics."""

    def load_finished(self, model: str, seconds: float, ok: bool) -> None:
        observe_load(model, seconds, ok)

    def runner_crashed(self, model: str) -> None:
        observe_runner_crash(model)


OBSERVER = SchedulerMetrics()


# ---------------------------------------------------------------- middleware

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def tracker(done: Callable[[web.Request, int, float], None] | None = None) -> Middleware:
    """Middleware: count every request and time it to the end of its (possibly streamed)
    response; `done` (the access log) gets the same status and duration."""

    @web.middleware
    async def track(request: web.Request, handler: Handler) -> web.StreamResponse:
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
            seconds = time.monotonic() - start
            fam = route_family(request.path)
            route = route_label(request)
            model = request.get(REQUEST_MODEL, OTHER)
            REQUESTS.labels(fam, route, model, str(status)).inc()
            REQUEST_SECONDS.labels(fam, route, model).observe(seconds)
            if status == 503:
                REJECTED.labels(fam).inc()
            if done is not None:
                done(request, status, seconds)

    return track


track = tracker()  # without an access log (tests, stand-in apps)


# ---------------------------------------------------------------- scrape-time collectors

class SchedulerState(Protocol):
    """What /metrics reads from the scheduler at scrape time."""

    @property
    def queue_depth(self) -> int: ...

    def ps(self) -> list[RunnerStatus]: ...

    def runner_clients(self) -> list[tuple[str, RunnerClient]]: ...


class SchedulerCollector:
    """Scheduler state at scrape time, plus the runners' own metrics fetched just before."""

    def __init__(self, scheduler: SchedulerState | None,
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
        log.debug("unparsable runner metrics", extra=kv(error=e))
        return []


async def _fetch_runner(client: RunnerClient) -> str | None:
    try:
        async with asyncio.timeout(RUNNER_SCRAPE_TIMEOUT_S):
            return await client.metrics_text(RUNNER_METRICS_MAX_BYTES)
    except TimeoutError:
        return None


async def runner_metrics(scheduler: SchedulerState) -> list[tuple[str, list[Metric]]]:
    targets = scheduler.runner_clients()
    if not targets:
        return []
    texts = await asyncio.gather(*(_fetch_runner(c) for _, c in targets))
    out = []
    for (model, _), text in zip(targets, texts, strict=True):
        if text:
            out.append((remember_model(model), parse_runner_metrics(text)))
    return out


async def metrics_response(scheduler: SchedulerState | None) -> web.Response:
    runners = await runner_metrics(scheduler) if scheduler is not None else []
    combined = _Combined(REGISTRY, SchedulerCollector(scheduler, runners))
    body = generate_latest(cast(CollectorRegistry, combined))  # it only calls .collect()
    resp = web.Response(body=body)
    resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return resp


def setup(app: web.Application, scheduler: SchedulerState | None = None) -> None:
    """Register /metrics (its key scope: security.route_scope / OLLAMAPY_METRICS_AUTH)."""
    async def handler(request: web.Request) -> web.Response:
        return await metrics_response(scheduler)

    app.router.add_get("/metrics", handler)
