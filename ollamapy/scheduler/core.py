"""The scheduler: one asyncio task owns every runner and every queued request.

Handlers never touch scheduler state: `lease()` posts a request event and awaits a future;
releases, cancellations, load results, process exits and keep-alive timers are events too.
After each event the actor runs `_schedule()`, which grants free slots, starts at most one
load at a time, evicts (idle first, shortest keep_alive first) and reloads on option changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

from ollamapy import keepalive
from ollamapy.config import Settings
from ollamapy.errors import (
    InternalError,
    OllamaError,
    PlacementError,
    RunnerError,
    RunnerNotFound,
    ServerBusy,
    ServerShuttingDown,
)
from ollamapy.inference.chat_format import ollama_renders
from ollamapy.logs import kv
from ollamapy.options import LOAD_OPTIONS
from ollamapy.placement.gpu import Inventory, discover
from ollamapy.placement.memory import ModelFacts, Placement, decision_fields, place, read_facts
from ollamapy.placement.rpc import SplitPlan, WorkerInfo, query_workers
from ollamapy.runner import variants
from ollamapy.runner.client import RunnerClient
from ollamapy.runner.flags import LaunchConfig
from ollamapy.runner.locate import Runner, RunnerLocator
from ollamapy.scheduler.events import (
    Event,
    Exited,
    Expired,
    HealthChecked,
    Loaded,
    LoadFailed,
    NeedRoom,
    Released,
    RequestArrived,
    RequestCancelled,
    RequestFailed,
    Tick,
    Unloaded,
    UnloadRequested,
)
from ollamapy.scheduler.launcher import Launcher, ProcessLauncher, RunnerHandle
from ollamapy.scheduler.observer import NoObserver, SchedulerObserver
from ollamapy.scheduler.policy import (
    DeviceShare,
    RunnerSpec,
    RunnerView,
    account_for_loaded,
    crash_backoff,
    estimate_options,
    fits,
    is_oom,
    launch_config,
    max_loaded_models,
    needs_reload,
    pick_victim,
    resolve_spec,
    split_plan,
    unavailable,
    wants_workers,
)
from ollamapy.scheduler.state import (
    GONE,
    SERVING,
    Grant,
    LoadedRunner,
    PendingRequest,
    RunnerState,
)
from ollamapy.store.model import Model

log = logging.getLogger("ollamapy.scheduler")

RUNNER_STOPPED = ("model runner has unexpectedly stopped, this may be due to resource "
                  "limitations or an internal error, check ollama server logs for details")
UNLOAD_GRACE_S = 5.0  # idle runners exit on SIGTERM in ~0.1 s; a wedged one gets SIGKILL
SHUTDOWN_GRACE_S = 3.0  # server shutdown: SIGTERM, SIGKILL after this, all runners at once
CRASH_WINDOW_S = 60.0
MAX_SPECS = 256  # remembered (model, load options) -> RunnerSpec answers


@dataclass(frozen=True)
class RunnerStatus:
    """One loaded model as /api/ps reports it."""

    model: Model
    size: int
    size_vram: int
    expires_at: datetime
    context_length: int
    pid: int | None
    state: str
    devices: tuple[DeviceShare, ...] = ()  # only for a model split over RPC workers


class Lease:
    """A slot on a healthy runner for the duration of one request."""

    def __init__(self, scheduler: Scheduler, grant: Grant, model: Model) -> None:
        r = grant.runner
        assert r.handle is not None and scheduler.session is not None
        self._scheduler = scheduler
        self._runner = r
        self.base_url: str = r.handle.base_url
        self.session: aiohttp.ClientSession = scheduler.session
        self.load_duration: float = grant.load_duration
        self.num_ctx: int = r.num_ctx
        self.props: dict[str, Any] = r.handle.props
        self.model: Model = model
        self.failed: BaseException | None = None
        # The runner refuses every request but /health without its own key.
        self.api_key: str = r.handle.api_key
        assert r.client is not None
        self.client: RunnerClient = r.client

    @property
    def pid(self) -> int | None:
        return self._runner.handle.pid if self._runner.handle else None

    def fail(self, exc: BaseException) -> OllamaError:
        """The runner broke mid-request: the scheduler checks it and replaces it if dead.
        Returns the error to report: Ollama's wording plus the runner's last error line, or
        "server is shutting down" when the stop was planned (the server is stopping)."""
        self.failed = exc
        if self._scheduler.closed:
            return ServerShuttingDown()
        self._scheduler._post(RequestFailed(self._runner, exc))
        return RunnerError(runner_failure_message(self._runner.handle, self._runner.rpc))


def runner_failure_message(handle: RunnerHandle | None, rpc: SplitPlan | None = None) -> str:
    detail = ""
    if handle is not None and handle.returncode is not None:
        detail = handle.last_error()
    msg = f"{RUNNER_STOPPED}: {detail}" if detail else RUNNER_STOPPED
    if rpc is not None and rpc.uses_workers:
        # llama.cpp aborts the whole runner when any worker fails: say which ones it used.
        msg += f" (the model ran split over RPC workers {', '.join(rpc.workers)}; " \
               "the next request reloads it on the workers that answer)"
    return msg


def _now() -> datetime:
    return datetime.now().astimezone()


class Scheduler:
    def __init__(self, settings: Settings, *, launcher: Launcher | None = None,
                 discover_fn: Callable[[], Inventory] | None = None,
                 facts_fn: Callable[[Model], ModelFacts | None] | None = None,
                 environ: Mapping[str, str] | None = None,
                 locator: RunnerLocator | None = None,
                 observer: SchedulerObserver | None = None) -> None:
        self.settings = settings
        self.observer: SchedulerObserver = observer or NoObserver()
        self._launcher = launcher
        self._locator = locator or RunnerLocator(environ)
        self._discover = discover_fn or (lambda: discover(environ))
        self._facts_fn = facts_fn
        self._environ = dict(os.environ if environ is None else environ)
        self._facts_cache: dict[tuple[str, int, int], ModelFacts | None] = {}
        self._specs: dict[tuple[Any, ...], tuple[Model, ModelFacts | None, RunnerSpec]] = {}
        self._runners: dict[str, LoadedRunner] = {}
        self._stopping: set[LoadedRunner] = set()
        self._pending: list[PendingRequest] = []
        self._loading: LoadedRunner | None = None
        self._inbox: asyncio.Queue[Event] = asyncio.Queue()
        self._crashes: dict[str, list[float]] = {}
        self._backoff_until: dict[str, float] = {}
        self._oom_retried: set[str] = set()
        self._tick: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._probe: asyncio.Task[None] | None = None
        self._closed = False
        self._config_home: Path | None = None
        self._variant_libs: tuple[str, ...] | None = None
        self.inventory: Inventory | None = None
        self.session: aiohttp.ClientSession | None = None
        self.default_keep_alive = keepalive.normalize(settings.keep_alive)
        self.max_queue = max(1, settings.max_queue)
        self.max_loaded = 3

    @property
    def closed(self) -> bool:
        """True once stop() began (server shutdown): cut streams say so, not "crashed"."""
        return self._closed

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self.inventory = await asyncio.to_thread(self._discover)
        self.max_loaded = max_loaded_models(self.settings, self.inventory)
        # No connection reuse towards runners (Ollama does the same): llama-server drops the
        # connection after a streamed /completion without saying so, and a pooled socket then
        # fails the next request (measured: every second streamed request, 20 of 40).
        # A loopback connect costs ~0.1 ms.
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, force_close=True),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
        )
        if self._launcher is None:
            self._launcher = self._process_launcher()
        for g in self.inventory.gpus:
            log.info("inference compute", extra=kv(
                id=g.id, library=g.library, compute=g.compute, driver=g.driver, name=g.name,
                total=f"{g.total / 2**30:.1f} GiB", available=f"{g.free / 2**30:.1f} GiB"))
        if not self.inventory.gpus:
            sysinfo = self.inventory.system
            log.info("inference compute", extra=kv(
                id="cpu", library="cpu", threads=sysinfo.threads,
                total=f"{sysinfo.total / 2**30:.1f} GiB",
                available=f"{sysinfo.free / 2**30:.1f} GiB"))
        log.info("scheduler started", extra=kv(
            gpus=len(self.inventory.gpus), max_loaded_models=self.max_loaded,
            num_parallel=self.settings.num_parallel, max_queue=self.max_queue))
        self._task = asyncio.create_task(self._run(), name="scheduler")
        if self.settings.rpc_workers:
            self._probe = asyncio.create_task(self._probe_workers(), name="rpc-probe")

    async def _probe_workers(self) -> None:
        """At start: say which configured RPC workers answer (each load asks again)."""
        for w in await query_workers(self.settings.rpc_workers):
            _log_worker(w)

    def _process_launcher(self) -> ProcessLauncher:
        assert self.inventory is not None
        self._config_home = Path(tempfile.mkdtemp(prefix="ollamapy-runner-"))
        libraries = self.inventory.libraries()

        def pick() -> Runner:
            runner = self._locator.pick(self.settings.llm_library, libraries=libraries)
            self._variant_libs = variants.libraries(runner.variant)
            log.info("using runner", extra=kv(variant=runner.variant, path=runner.binary))
            return runner

        launcher = ProcessLauncher(pick, self._config_home,
                                   stall_timeout=max(0.0, self.settings.load_timeout),
                                   environ=self._environ)
        launcher.find_runner()
        return launcher

    async def stop(self) -> None:
        """Fail queued requests and stop every runner (SIGTERM, SIGKILL after a few seconds)."""
        if self._closed:
            return
        self._closed = True
        if self._probe is not None:
            self._probe.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._tick is not None:
            self._tick.cancel()
        for p in self._pending:
            if not p.future.done():
                p.future.set_exception(ServerShuttingDown())
        self._pending.clear()
        handles: list[RunnerHandle] = []
        while not self._inbox.empty():  # a load that finished but was never processed
            ev = self._inbox.get_nowait()
            if isinstance(ev, Loaded):
                handles.append(ev.handle)
        runners = [*self._runners.values(), *self._stopping]
        for r in runners:
            if r.timer is not None:
                r.timer.cancel()
            if r.handle is not None:
                handles.append(r.handle)
        tasks = [t for r in runners for t in r.tasks if not t.done()]
        for t in tasks:
            t.cancel()
        stops = [asyncio.ensure_future(h.stop(SHUTDOWN_GRACE_S)) for h in handles]
        waits = [*stops, *tasks]
        if waits:
            await asyncio.wait(waits, timeout=SHUTDOWN_GRACE_S + 4)
        for r in runners:
            r.unloaded()
        self._runners.clear()
        self._stopping.clear()
        if self.session is not None:
            await self.session.close()
        if self._config_home is not None:
            shutil.rmtree(self._config_home, ignore_errors=True)
        log.info("scheduler stopped", extra=kv(runners=len(handles)))

    # ------------------------------------------------------------------ public API

    @asynccontextmanager
    async def lease(self, model: Model, options: Mapping[str, Any] | None,
                    keep_alive: float | None, *, embedding: bool = False) -> AsyncIterator[Lease]:
        """A runner slot for `model`; released (and keep_alive applied) on exit."""
        if self._closed or self._task is None:
            raise ServerShuttingDown()
        arrived = time.monotonic()
        facts = await self._facts(model)
        spec = self._spec(model, options or {}, facts, embedding)
        ka = None if keep_alive is None else keepalive.normalize(keep_alive)
        fut: asyncio.Future[Grant] = asyncio.get_running_loop().create_future()
        pending = PendingRequest(model, spec, ka, facts, fut, arrived)
        if self._closed:  # stopped while the facts were read: no actor will answer
            raise ServerShuttingDown()
        if not self._grant_now(pending):
            self._post(RequestArrived(pending))
        try:
            grant = await fut
        except asyncio.CancelledError:
            if fut.cancelled():
                self._post(RequestCancelled(pending))
            elif fut.exception() is None:  # granted just as the client went away
                self._post(Released(fut.result().runner, True))
            raise
        lease = Lease(self, grant, model)
        try:
            yield lease
        finally:
            self._post(Released(grant.runner, lease.failed is None))

    async def unload(self, model: Model) -> bool:
        """Unload `model` without loading it (keep_alive 0 with an empty prompt). Waits for an
        idle runner to exit; a busy one unloads as soon as its requests finish. False when the
        model was not loaded."""
        if self._closed or self._task is None:
            return False
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._post(UnloadRequested(str(model.model_path), fut))
        try:
            return await asyncio.wait_for(asyncio.shield(fut), UNLOAD_GRACE_S + 5)
        except TimeoutError:  # the runner is being killed; it is no longer serving
            return True

    def ps(self) -> list[RunnerStatus]:
        """Loaded (and loading) runners, most distant expiry first (read-only snapshot)."""
        out = []
        now = _now()
        for r in list(self._runners.values()):
            if r.state in GONE:
                continue
            size, vram = self._sizes(r)
            expires = r.expires_at or keepalive.expiry(now, r.keep_alive)
            out.append(RunnerStatus(model=r.model, size=size, size_vram=vram, expires_at=expires,
                                    context_length=r.num_ctx,
                                    pid=r.handle.pid if r.handle else None,
                                    state=r.state.value, devices=r.devices))
        out.sort(key=lambda s: s.expires_at, reverse=True)
        return out

    @property
    def queue_depth(self) -> int:
        """Requests waiting for a slot (read by /metrics)."""
        return sum(1 for p in self._pending if not p.future.done())

    def runner_clients(self) -> list[tuple[str, RunnerClient]]:
        """(model short name, client with the runner's key) of every runner that serves or
        is being checked (read by /metrics, which re-exports each runner's own metrics)."""
        if self.session is None:
            return []
        return [(r.model.short_name, r.client) for r in list(self._runners.values())
                if r.client is not None and (r.state in SERVING
                                             or r.state == RunnerState.CHECKING)]

    def _sizes(self, r: LoadedRunner) -> tuple[int, int]:
        if r.handle is not None:
            size, vram = r.handle.sizes()
            if size > 0:
                return size, vram
        if r.placement is not None:
            e = r.placement.estimate
            return e.total_size, e.vram_size
        return r.model.size, 0

    # ------------------------------------------------------------------ helpers

    def _post(self, event: Event) -> None:
        self._inbox.put_nowait(event)

    async def _facts(self, model: Model) -> ModelFacts | None:
        if self._facts_fn is not None:
            return self._facts_fn(model)
        path = model.model_path
        try:
            st = path.stat()
        except OSError:
            return None
        key = (str(path), st.st_size, st.st_mtime_ns)
        if key not in self._facts_cache:
            try:
                facts: ModelFacts | None = await asyncio.to_thread(
                    read_facts, path, model.projector_paths)
            except (OSError, ValueError) as e:  # corrupt: llama-server will say why
                log.debug("cannot read model facts", extra=kv(path=path, error=e))
                facts = None
            self._facts_cache[key] = facts
        return self._facts_cache[key]

    def _spec(self, model: Model, options: Mapping[str, Any], facts: ModelFacts | None,
              embedding: bool) -> RunnerSpec:
        """`resolve_spec` for a request, remembered per (model, load options): every request
        asks, and the answer depends on nothing else (settings and inventory are fixed once
        the scheduler runs; a changed model file is a new Model and new facts)."""
        key: tuple[Any, ...] | None = (id(model), id(facts), embedding, tuple(sorted(
            (k, v) for k, v in options.items() if k in LOAD_OPTIONS and v is not None)))
        try:
            hit = self._specs.get(key)  # type: ignore[arg-type]
        except TypeError:  # an unhashable option value: not remembered
            hit, key = None, None
        if hit is not None and hit[0] is model and hit[1] is facts:
            return hit[2]
        assert self.inventory is not None
        spec = resolve_spec(model.model_path, options, settings=self.settings,
                            inventory=self._runner_inventory(), facts=facts,
                            embedding=embedding, projectors=model.projector_paths,
                            adapters=model.adapter_paths, params=model.params,
                            jinja=not ollama_renders(model), rerank=model.reranker)
        if key is not None:
            self._specs[key] = (model, facts, spec)
            while len(self._specs) > MAX_SPECS:
                del self._specs[next(iter(self._specs))]
        return spec

    def _runner_inventory(self, inv: Inventory | None = None) -> Inventory:
        inv = inv or self.inventory
        assert inv is not None
        return inv.only(self._variant_libs)

    # ------------------------------------------------------------------ the actor

    async def _run(self) -> None:
        while True:
            event = await self._inbox.get()
            try:
                self._handle(event)
                self._schedule()
            except Exception:
                log.exception("scheduler event failed", extra=kv(event=type(event).__name__))
                # Never leave the request that triggered a bug waiting for ever.
                if isinstance(event, RequestArrived) and not event.pending.future.done():
                    event.pending.future.set_exception(InternalError("internal scheduler error"))

    def _handle(self, ev: Event) -> None:
        """The one dispatch: every state change goes through here, on the actor task."""
        match ev:
            case RequestArrived(p):
                self._on_request(p)
            case RequestCancelled(p):
                if p in self._pending:
                    self._pending.remove(p)
            case Released(r, ok):
                self._on_release(r, ok)
            case RequestFailed(r, exc):
                self._on_failed(r, exc)
            case UnloadRequested(key, fut):
                self._on_unload(key, fut)
            case Loaded(r, handle):
                self._on_loaded(r, handle)
            case LoadFailed(r, exc):
                self._on_load_failed(r, exc)
            case NeedRoom(r):
                self._on_need_room(r)
            case Exited(r):
                self._on_exited(r)
            case Unloaded(r):
                self._stopping.discard(r)
                r.unloaded()
            case Expired(r, gen):
                if r.timer_gen == gen and r.state == RunnerState.READY and r.refcount == 0:
                    log.info("model expired", extra=kv(model=r.model.short_name))
                    self._begin_unload(r)
            case HealthChecked(r, ok):
                self._on_health(r, ok)
            case Tick():
                pass  # only re-runs _schedule

    def _ready(self, key: str) -> LoadedRunner | None:
        """The runner for `key`; one whose process already exited is retired on the spot, so
        a request arriving right after a crash never lands on the corpse."""
        r = self._runners.get(key)
        if (r is not None and r.state in SERVING and r.handle is not None
                and r.handle.returncode is not None):
            self._on_exited(r)
            return None
        return r

    def _on_request(self, p: PendingRequest) -> None:
        if p.future.done():
            return
        r = self._ready(p.key)
        if (r is not None and r.state == RunnerState.READY and not needs_reload(r.spec, p.spec)
                and r.refcount < r.spec.num_parallel
                and not any(q.key == p.key for q in self._pending)):
            self._grant(r, p)  # a loaded, compatible runner never waits behind a load
            return
        if len(self._pending) >= self.max_queue:
            p.future.set_exception(ServerBusy())
            return
        self._pending.append(p)

    def _grant_now(self, p: PendingRequest) -> bool:
        """The lease fast path: a ready runner with a free slot is granted in the requesting
        task, without the round trip through the actor (two loop wake-ups per request).

        Still the actor's decision and only its state change (`_on_request`'s first branch,
        `_grant`), and only when it is the change the actor would make next: the inbox is
        empty (so no release, failure, exit or expiry the actor has not applied yet can
        precede this request; a queued event stays in the queue until the actor resumes),
        nothing waits in the queue, and the runner is READY, alive, compatible and has a
        slot. asyncio runs one task at a time and neither this nor any actor handler awaits,
        so no one sees state half-changed and state changes stay applied in arrival order:
        the invariant the single actor exists for. Everything else goes through the actor."""
        if self._closed or self._pending or not self._inbox.empty():
            return False
        r = self._runners.get(p.key)
        if (r is None or r.state != RunnerState.READY or r.handle is None
                or r.handle.returncode is not None or r.refcount >= r.spec.num_parallel
                or needs_reload(r.spec, p.spec)):
            return False
        self._grant(r, p)
        return True

    def _grant(self, r: LoadedRunner, p: PendingRequest) -> None:
        if p.future.done():
            return
        assert r.handle is not None
        r.refcount += 1
        r.armed = False
        if r.timer is not None:
            r.timer.cancel()
            r.timer = None
        if p.keep_alive is not None:
            r.keep_alive = p.keep_alive
        if r.expires_at is None:
            r.expires_at = keepalive.expiry(_now(), r.keep_alive)
        p.future.set_result(Grant(r, time.monotonic() - p.arrived))

    def _on_release(self, r: LoadedRunner, ok: bool) -> None:
        r.refcount = max(0, r.refcount - 1)
        if not ok:
            log.debug("request ended with a runner failure", extra=kv(model=r.model.short_name))
        if r.refcount == 0 and r.state in SERVING:
            self._on_idle(r)

    def _on_idle(self, r: LoadedRunner) -> None:
        if r.state == RunnerState.READY and r.keep_alive == 0 and any(
                p.key == r.key and not p.future.done() and not needs_reload(r.spec, p.spec)
                for p in self._pending):
            return  # keep_alive 0 unloads after the request, not under a queued one for it
        r.armed = True
        if r.state == RunnerState.DRAINING or r.keep_alive == 0:
            self._begin_unload(r)
            return
        r.expires_at = keepalive.expiry(_now(), r.keep_alive)
        if r.timer is not None:
            r.timer.cancel()
            r.timer = None
        if not keepalive.is_forever(r.keep_alive):
            r.timer_gen += 1
            r.timer = asyncio.get_running_loop().call_later(
                r.keep_alive, self._post, Expired(r, r.timer_gen))

    def _begin_unload(self, r: LoadedRunner) -> None:
        if r.state in GONE:
            return
        if r.timer is not None:
            r.timer.cancel()
            r.timer = None
        r.state = RunnerState.STOPPING
        if self._runners.get(r.key) is r:
            del self._runners[r.key]
        if r.handle is None:
            return
        self._stopping.add(r)
        log.info("unloading model", extra=kv(model=r.model.short_name, pid=r.handle.pid))
        r.tasks.append(asyncio.create_task(self._unload(r), name=f"unload-{r.key}"))

    async def _unload(self, r: LoadedRunner) -> None:
        try:
            assert r.handle is not None
            await r.handle.stop(UNLOAD_GRACE_S)
        finally:
            self._post(Unloaded(r))

    def _on_loaded(self, r: LoadedRunner, handle: RunnerHandle) -> None:
        if self._loading is r:
            self._loading = None
        self._oom_retried.discard(r.key)
        r.handle = handle
        if r.state != RunnerState.LOADING or self._closed:  # unloaded while loading
            r.state = RunnerState.READY
            self._begin_unload(r)
            return
        r.state = RunnerState.READY
        assert self.session is not None
        r.client = RunnerClient(self.session, handle.base_url, handle.api_key, spare=True)
        self.observer.load_finished(r.model.short_name, time.monotonic() - r.started, ok=True)
        log.info("llama runner started", extra=kv(
            model=r.model.short_name, pid=handle.pid, seconds=f"{time.monotonic() - r.started:.2f}",
            num_ctx=r.num_ctx, parallel=r.spec.num_parallel))
        r.tasks.append(asyncio.create_task(self._watch(r), name=f"watch-{r.key}"))

    async def _watch(self, r: LoadedRunner) -> None:
        assert r.handle is not None
        await r.handle.wait()
        self._post(Exited(r))

    def _on_load_failed(self, r: LoadedRunner, exc: BaseException) -> None:
        if self._loading is r:
            self._loading = None
        if self._runners.get(r.key) is r:
            del self._runners[r.key]
        r.state = RunnerState.DEAD
        others = [x for x in self._runners.values() if x.state in SERVING]
        if is_oom(str(exc)) and others and r.key not in self._oom_retried:
            # Ollama: out of memory with other models resident -> evict them all, retry once.
            log.warning("out of memory loading model, unloading the others and retrying",
                        extra=kv(model=r.model.short_name, evict=len(others)))
            self._oom_retried.add(r.key)
            for x in others:
                self._evict(x)
            return
        self._oom_retried.discard(r.key)
        self.observer.load_finished(r.model.short_name, time.monotonic() - r.started, ok=False)
        err = exc if isinstance(exc, OllamaError) else RunnerError(str(exc) or type(exc).__name__)
        log.error("error loading model", extra=kv(model=r.model.short_name, error=err.message))
        for p in list(self._pending):
            if p.key == r.key and not needs_reload(r.spec, p.spec):
                self._pending.remove(p)
                if not p.future.done():
                    p.future.set_exception(err)
        r.unloaded()

    def _on_need_room(self, r: LoadedRunner) -> None:
        if self._loading is r:
            self._loading = None
        if self._runners.get(r.key) is r:
            del self._runners[r.key]
        r.state = RunnerState.DEAD
        victim = self._victim()
        if victim is not None:
            log.info("evicting model to make room", extra=kv(
                evict=victim.model.short_name, load=r.model.short_name))
            self._evict(victim)
        else:  # nothing left to evict: load it anyway (best partial fit)
            for p in self._pending:
                if p.key == r.key:
                    self._start_load(p, allow_evict=False)
                    break

    def _on_exited(self, r: LoadedRunner) -> None:
        if r.state in GONE:
            return
        msg = r.handle.exit_message() if r.handle is not None else "exited"
        log.warning("runner exited unexpectedly", extra=kv(model=r.model.short_name, error=msg))
        if r.timer is not None:
            r.timer.cancel()
            r.timer = None
        r.state = RunnerState.DEAD
        if self._runners.get(r.key) is r:
            del self._runners[r.key]
        self._record_crash(r.key)
        self.observer.runner_crashed(r.model.short_name)
        r.unloaded()

    def _on_failed(self, r: LoadedRunner, exc: BaseException) -> None:
        if r.state not in SERVING or r.handle is None:
            return
        log.warning("request failed on runner", extra=kv(model=r.model.short_name, error=repr(exc)))
        if r.handle.returncode is not None:
            self._on_exited(r)
            return
        if r.rpc is not None:
            # llama.cpp aborts on any RPC failure, but its /health may still answer while it
            # dies: never hand it another request; the next one reloads on the workers that
            # answer then.
            log.warning("runner split over RPC workers failed, replacing it", extra=kv(
                model=r.model.short_name, workers=",".join(r.rpc.workers)))
            self._record_crash(r.key)
            self.observer.runner_crashed(r.model.short_name)
            self._begin_unload(r)
            return
        # No new work until /health answers: the process may be dead but not yet reaped.
        r.resume_state, r.state = r.state, RunnerState.CHECKING
        r.tasks.append(asyncio.create_task(self._check_health(r)))

    def _on_health(self, r: LoadedRunner, ok: bool) -> None:
        if r.state != RunnerState.CHECKING:
            return
        if ok and r.handle is not None and r.handle.returncode is None:
            r.state = r.resume_state
            if r.refcount == 0:
                self._on_idle(r)
            return
        log.warning("runner is not healthy, stopping it", extra=kv(
            model=r.model.short_name, pid=r.handle.pid if r.handle else None))
        self._record_crash(r.key)
        self.observer.runner_crashed(r.model.short_name)
        self._begin_unload(r)

    async def _check_health(self, r: LoadedRunner) -> None:
        assert r.handle is not None and self.session is not None
        ok = False
        with contextlib.suppress(TimeoutError, aiohttp.ClientError):
            async with self.session.get(f"{r.handle.base_url}/health",
                                        timeout=aiohttp.ClientTimeout(total=5)) as resp:
                ok = resp.status == 200
        self._post(HealthChecked(r, ok))

    def _on_unload(self, key: str, fut: asyncio.Future[bool]) -> None:
        r = self._runners.get(key)
        if r is None:
            stopping = [s for s in self._stopping if s.key == key]
            if stopping:
                stopping[0].unload_waiters.append(fut)
            else:
                fut.set_result(False)
            return
        r.keep_alive = 0.0
        if r.state in SERVING and r.refcount == 0:
            r.unload_waiters.append(fut)
            self._begin_unload(r)
        else:  # busy or still loading: it unloads as soon as it is idle
            fut.set_result(True)

    def _record_crash(self, key: str) -> None:
        now = time.monotonic()
        recent = [t for t in self._crashes.get(key, []) if now - t < CRASH_WINDOW_S]
        recent.append(now)
        self._crashes[key] = recent
        delay = crash_backoff(len(recent))
        if delay > 0:
            log.warning("runner keeps crashing, backing off", extra=kv(key=key, seconds=delay))
            self._backoff_until[key] = now + delay

    # ------------------------------------------------------------------ decisions

    def _schedule(self) -> None:
        if self._closed:
            return
        now = time.monotonic()
        # One load at a time, and none while an evicted or reloading runner drains or stops.
        turn_taken = (self._loading is not None or bool(self._stopping)
                      or any(r.state == RunnerState.DRAINING for r in self._runners.values()))
        blocked: set[str] = set()
        for p in list(self._pending):
            if p.future.done():
                self._pending.remove(p)
                continue
            r = self._ready(p.key)
            if r is not None:
                if r.state == RunnerState.READY and not needs_reload(r.spec, p.spec):
                    if p.key not in blocked and r.refcount < r.spec.num_parallel:
                        self._pending.remove(p)
                        self._grant(r, p)
                    else:
                        blocked.add(p.key)  # FIFO per model: later ones wait behind this one
                    continue
                if r.state in (RunnerState.LOADING, RunnerState.CHECKING):
                    continue
                if turn_taken:
                    continue
                turn_taken = True
                if r.state == RunnerState.READY:  # different runner options: reload once drained
                    log.info("reloading model with new options", extra=kv(
                        model=r.model.short_name, num_ctx=p.spec.num_ctx))
                    r.state = RunnerState.DRAINING
                    if r.refcount == 0:
                        self._begin_unload(r)
                continue
            if turn_taken:
                continue
            until = self._backoff_until.get(p.key, 0.0)
            if until > now:
                self._arm_tick(until - now)
                continue
            turn_taken = True
            active = [x for x in self._runners.values() if x.state != RunnerState.STOPPING]
            if len(active) >= self.max_loaded:
                victim = self._victim()
                if victim is not None:
                    self._evict(victim)
                continue
            self._start_load(p, allow_evict=bool(active))
        for r in self._runners.values():  # loaded for a request that went away meanwhile
            if r.state == RunnerState.READY and r.refcount == 0 and not r.armed:
                self._on_idle(r)

    def _victim(self) -> LoadedRunner | None:
        candidates = [r for r in self._runners.values() if r.state in SERVING]
        view = pick_victim([RunnerView(r.key, r.keep_alive, r.refcount, str(r.spec.model_path))
                            for r in candidates])
        if view is None:
            return None
        return self._runners.get(view.key)

    def _evict(self, victim: LoadedRunner) -> None:
        if victim.refcount == 0:
            self._begin_unload(victim)
        elif victim.state == RunnerState.READY:
            victim.state = RunnerState.DRAINING  # unloads when its requests finish

    def _arm_tick(self, delay: float) -> None:
        if self._tick is not None:
            self._tick.cancel()
        self._tick = asyncio.get_running_loop().call_later(delay, self._post, Tick())

    def _start_load(self, p: PendingRequest, *, allow_evict: bool) -> None:
        r = LoadedRunner(key=p.key, model=p.model, spec=p.spec, facts=p.facts,
                    keep_alive=p.keep_alive if p.keep_alive is not None
                    else self.default_keep_alive, started=time.monotonic())
        self._runners[r.key] = r
        self._loading = r
        others = [x.placement for x in self._runners.values() if x is not r]
        # A worker serves one client: those our other runners hold are not available.
        held = {e: x.model.short_name for x in [*self._runners.values(), *self._stopping]
                if x is not r and x.rpc is not None for e in x.rpc.workers}
        r.tasks.append(asyncio.create_task(self._load(r, others, allow_evict, held),
                                           name=f"load-{r.key}"))

    async def _load(self, r: LoadedRunner, others: list[Placement | None],
                    allow_evict: bool, held: Mapping[str, str] | None = None) -> None:
        try:
            if isinstance(self._launcher, ProcessLauncher):
                self._launcher.find_runner()  # its variant decides which GPUs count
            # Fresh numbers for every load: free VRAM and RAM change as models come and go.
            inv = await asyncio.to_thread(self._discover)
            inv = self._runner_inventory(account_for_loaded(inv, others))
            opts = estimate_options(r.spec, self.settings)
            placement = None
            rpc: SplitPlan | None = None
            if r.facts is not None:
                placement = place(r.facts, inv, opts, spread=self.settings.sched_spread,
                                  main_gpu=r.spec.main_gpu)
                log.info("offload decision", extra=kv(**decision_fields(placement, opts)))
                # auto: make room locally first (as before); workers when nothing is left to
                # evict. A model pinned to workers evicts only if it does not fit with them.
                if wants_workers(r.spec, r.facts, inv, self.settings) and not (
                        allow_evict and r.spec.placement == "auto"):
                    try:
                        rpc = await self._plan_rpc(r, r.facts, inv, held or {})
                    except PlacementError:
                        if not allow_evict:
                            raise
                        self._post(NeedRoom(r))
                        return
                elif allow_evict and not fits(placement, inv):
                    self._post(NeedRoom(r))
                    return
            r.placement = placement
            cfg = self._launch_config(r, placement, inv, rpc)
            assert self._launcher is not None
            handle = await self._launcher.launch(cfg, r.model.short_name)
        except asyncio.CancelledError:
            raise
        except (OllamaError, RunnerNotFound, OSError, ValueError) as e:
            self._post(LoadFailed(r, e))
            return
        except Exception:  # never wedge the actor on an unexpected launcher bug
            log.exception("unexpected error loading", extra=kv(model=r.model.short_name))
            self._post(LoadFailed(r, InternalError("unexpected error loading the model, "
                                                   "check the server log")))
            return
        self._post(Loaded(r, handle))

    async def _plan_rpc(self, r: LoadedRunner, facts: ModelFacts, inv: Inventory,
                        held: Mapping[str, str]) -> SplitPlan | None:
        """Ask the workers (bounded: one deadline per query, all at once, never on the actor)
        and split the model over local GPUs + workers + CPU. None when no worker gets a layer.
        Sets r.rpc before the launch so a concurrent load sees the workers as taken."""
        workers = r.spec.rpc_workers
        taken = unavailable(workers, held)
        answers = await query_workers([w for w in workers if w.endpoint not in held])
        by = {i.endpoint: i for i in [*answers, *taken]}
        infos = [by[w.endpoint] for w in workers]
        for w in infos:
            _log_worker(w)
        plan, shares = split_plan(facts, r.spec, inv, infos, self.settings)
        for warning in plan.warnings:  # plan_split decides, the scheduler says
            log.warning("%s", warning, extra=kv(model=r.model.short_name))
        log.info("rpc placement", extra=kv(model=r.model.short_name, split=plan.describe(),
                                           workers=",".join(plan.workers) or "none"))
        if not plan.uses_workers:
            return None
        r.rpc, r.devices = plan, tuple(shares)
        return plan

    def _launch_config(self, r: LoadedRunner, placement: Placement | None,
                       inv: Inventory, rpc: SplitPlan | None = None) -> LaunchConfig:
        return launch_config(r.spec, placement, inv, settings=self.settings,
                             gpu_backend=self._variant_libs != (),
                             embedding_model=bool(r.facts and r.facts.embedding_model),
                             alias=r.model.short_name, max_loaded=self.max_loaded, rpc=rpc)


def _log_worker(w: WorkerInfo) -> None:
    if w.up:
        log.info("rpc worker", extra=kv(
            endpoint=w.endpoint, devices=len(w.devices),
            free=",".join(f"{d.free / 2**20:.0f} MiB" for d in w.devices),
            budget=f"{w.spec.mem / 2**20:.0f} MiB" if w.spec.mem else "reported"))
    else:
        log.warning("rpc worker unavailable", extra=kv(endpoint=w.endpoint, error=w.error))
