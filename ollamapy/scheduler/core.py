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
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

from ollamapy import keepalive
from ollamapy.config import Settings
from ollamapy.errors import OllamaError, RunnerError, RunnerNotFound, ServerBusy
from ollamapy.gpu import GpuDevice, Inventory, discover
from ollamapy.logs import kv
from ollamapy.memory import (
    EstimateOptions,
    ModelFacts,
    Placement,
    decision_fields,
    place,
    read_facts,
)
from ollamapy.runner.flags import LaunchConfig, cache_ram_mib
from ollamapy.runner.locate import Runner, pick_runner
from ollamapy.scheduler.launcher import Launcher, ProcessLauncher, RunnerHandle
from ollamapy.scheduler.policy import (
    RunnerSpec,
    RunnerView,
    crash_backoff,
    max_loaded_models,
    needs_reload,
    pick_victim,
    resolve_spec,
)
from ollamapy.server import metrics
from ollamapy.store.model import Model

log = logging.getLogger("ollamapy.scheduler")

RUNNER_STOPPED = ("model runner has unexpectedly stopped, this may be due to resource "
                  "limitations or an internal error, check ollama server logs for details")
UNLOAD_GRACE_S = 5.0  # idle runners exit on SIGTERM in ~0.1 s; a wedged one gets SIGKILL
SHUTDOWN_GRACE_S = 3.0  # server shutdown: SIGTERM, SIGKILL after this, all runners at once
CRASH_WINDOW_S = 60.0

# Which discovered GPUs a runner variant can use (None = all of them).
VARIANT_LIBRARIES: dict[str, tuple[str, ...] | None] = {
    "cuda": ("cuda",), "rocm": ("rocm",), "metal": ("metal",), "vulkan": ("cuda", "rocm"),
    "cpu": (), "system": None,
}


@dataclass(eq=False)
class _Pending:
    model: Model
    spec: RunnerSpec
    keep_alive: float | None
    facts: ModelFacts | None
    future: asyncio.Future[_Grant]
    arrived: float

    @property
    def key(self) -> str:
        return str(self.spec.model_path)


@dataclass(eq=False)
class _Runner:
    key: str
    model: Model
    spec: RunnerSpec
    facts: ModelFacts | None
    keep_alive: float
    state: str = "loading"  # loading | ready | draining | checking | stopping | dead
    resume_state: str = "ready"  # where a health check that passes returns to
    handle: RunnerHandle | None = None
    refcount: int = 0
    expires_at: datetime | None = None
    timer: asyncio.TimerHandle | None = None
    timer_gen: int = 0
    armed: bool = False  # idle bookkeeping (timer or unload) done since the last release
    placement: Placement | None = None
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    unload_waiters: list[asyncio.Future[bool]] = field(default_factory=list)
    started: float = 0.0

    def unloaded(self) -> None:
        """Tell everyone waiting for this runner to go (`ollamapy stop`) that it is gone."""
        for f in self.unload_waiters:
            if not f.done():
                f.set_result(True)
        self.unload_waiters.clear()

    @property
    def num_ctx(self) -> int:
        if self.handle is not None and self.handle.num_ctx > 0:
            return self.handle.num_ctx
        return self.spec.num_ctx


@dataclass(frozen=True)
class _Grant:
    runner: _Runner
    load_duration: float


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


class Lease:
    """A slot on a healthy runner for the duration of one request."""

    def __init__(self, scheduler: Scheduler, grant: _Grant, model: Model) -> None:
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

    @property
    def pid(self) -> int | None:
        return self._runner.handle.pid if self._runner.handle else None

    def fail(self, exc: BaseException) -> RunnerError:
        """The runner broke mid-request: the scheduler checks it and replaces it if dead.
        Returns the error to report (Ollama's wording, plus the runner's last error line)."""
        self.failed = exc
        self._scheduler._post(("failed", self._runner, exc))
        return RunnerError(runner_failure_message(self._runner.handle))


def runner_failure_message(handle: RunnerHandle | None) -> str:
    detail = ""
    if handle is not None and handle.returncode is not None:
        detail = handle.last_error()
    return f"{RUNNER_STOPPED}: {detail}" if detail else RUNNER_STOPPED


def _now() -> datetime:
    return datetime.now().astimezone()


class Scheduler:
    def __init__(self, settings: Settings, *, launcher: Launcher | None = None,
                 discover_fn: Callable[[], Inventory] | None = None,
                 facts_fn: Callable[[Model], ModelFacts | None] | None = None,
                 environ: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self._launcher = launcher
        self._discover = discover_fn or (lambda: discover(environ))
        self._facts_fn = facts_fn
        self._environ = dict(os.environ if environ is None else environ)
        self._facts_cache: dict[tuple[str, int, int], ModelFacts | None] = {}
        self._runners: dict[str, _Runner] = {}
        self._stopping: set[_Runner] = set()
        self._pending: list[_Pending] = []
        self._loading: _Runner | None = None
        self._inbox: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        self._crashes: dict[str, list[float]] = {}
        self._backoff_until: dict[str, float] = {}
        self._oom_retried: set[str] = set()
        self._tick: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._config_home: Path | None = None
        self._variant_libs: tuple[str, ...] | None = None
        self.inventory: Inventory | None = None
        self.session: aiohttp.ClientSession | None = None
        self.default_keep_alive = keepalive.normalize(float(settings["OLLAMA_KEEP_ALIVE"]))
        self.max_queue = max(1, int(settings["OLLAMA_MAX_QUEUE"] or 0))
        self.max_loaded = 3

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
            num_parallel=self.settings["OLLAMA_NUM_PARALLEL"], max_queue=self.max_queue))
        self._task = asyncio.create_task(self._run(), name="scheduler")

    def _process_launcher(self) -> ProcessLauncher:
        assert self.inventory is not None
        self._config_home = Path(tempfile.mkdtemp(prefix="ollamapy-runner-"))
        libraries = self.inventory.libraries()

        def pick() -> Runner:
            runner = pick_runner(self.settings["OLLAMA_LLM_LIBRARY"], self._environ,
                                 libraries=libraries)
            self._variant_libs = VARIANT_LIBRARIES.get(runner.variant)
            log.info("using runner", extra=kv(variant=runner.variant, path=runner.binary))
            return runner

        launcher = ProcessLauncher(pick, self._config_home,
                                   stall_timeout=max(0.0, float(
                                       self.settings["OLLAMA_LOAD_TIMEOUT"])),
                                   environ=self._environ)
        launcher.find_runner()
        return launcher

    async def stop(self) -> None:
        """Fail queued requests and stop every runner (SIGTERM, SIGKILL after a few seconds)."""
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._tick is not None:
            self._tick.cancel()
        for p in self._pending:
            if not p.future.done():
                p.future.set_exception(OllamaError("server is shutting down", status=503))
        self._pending.clear()
        handles: list[RunnerHandle] = []
        while not self._inbox.empty():  # a load that finished but was never processed
            ev = self._inbox.get_nowait()
            if ev[0] == "loaded":
                handles.append(ev[2])
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
            raise OllamaError("server is shutting down", status=503)
        arrived = time.monotonic()
        facts = await self._facts(model)
        assert self.inventory is not None
        spec = resolve_spec(model.model_path, options or {}, settings=self.settings,
                            inventory=self._runner_inventory(), facts=facts,
                            embedding=embedding, projectors=model.projector_paths,
                            adapters=model.adapter_paths, params=model.params)
        ka = None if keep_alive is None else keepalive.normalize(keep_alive)
        fut: asyncio.Future[_Grant] = asyncio.get_running_loop().create_future()
        pending = _Pending(model, spec, ka, facts, fut, arrived)
        self._post(("request", pending))
        try:
            grant = await fut
        except asyncio.CancelledError:
            if fut.cancelled():
                self._post(("cancel", pending))
            elif fut.exception() is None:  # granted just as the client went away
                self._post(("release", fut.result().runner, True))
            raise
        lease = Lease(self, grant, model)
        try:
            yield lease
        finally:
            self._post(("release", grant.runner, lease.failed is None))

    async def unload(self, model: Model) -> bool:
        """Unload `model` without loading it (keep_alive 0 with an empty prompt). Waits for an
        idle runner to exit; a busy one unloads as soon as its requests finish. False when the
        model was not loaded."""
        if self._closed or self._task is None:
            return False
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._post(("unload", str(model.model_path), fut))
        try:
            return await asyncio.wait_for(asyncio.shield(fut), UNLOAD_GRACE_S + 5)
        except TimeoutError:  # the runner is being killed; it is no longer serving
            return True

    def ps(self) -> list[RunnerStatus]:
        """Loaded (and loading) runners, most distant expiry first (read-only snapshot)."""
        out = []
        now = _now()
        for r in list(self._runners.values()):
            if r.state in ("stopping", "dead"):
                continue
            size, vram = self._sizes(r)
            expires = r.expires_at or keepalive.expiry(now, r.keep_alive)
            out.append(RunnerStatus(model=r.model, size=size, size_vram=vram, expires_at=expires,
                                    context_length=r.num_ctx,
                                    pid=r.handle.pid if r.handle else None, state=r.state))
        out.sort(key=lambda s: s.expires_at, reverse=True)
        return out

    @property
    def queue_depth(self) -> int:
        """Requests waiting for a slot (read by /metrics)."""
        return sum(1 for p in self._pending if not p.future.done())

    def runner_urls(self) -> list[tuple[str, str]]:
        """(model short name, base URL) of every serving runner (read by /metrics)."""
        return [(r.model.short_name, r.handle.base_url) for r in list(self._runners.values())
                if r.handle is not None and r.state in ("ready", "draining", "checking")]

    def _sizes(self, r: _Runner) -> tuple[int, int]:
        if r.handle is not None:
            size, vram = r.handle.sizes()
            if size > 0:
                return size, vram
        if r.placement is not None:
            e = r.placement.estimate
            return e.total_size, e.vram_size
        return r.model.size, 0

    # ------------------------------------------------------------------ helpers

    def _post(self, event: tuple[Any, ...]) -> None:
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
                log.debug("cannot read model facts for %s: %s", path, e)
                facts = None
            self._facts_cache[key] = facts
        return self._facts_cache[key]

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
                log.exception("scheduler event %s failed", event[0])
                # Never leave the request that triggered a bug waiting for ever.
                if event[0] == "request" and not event[1].future.done():
                    event[1].future.set_exception(OllamaError("internal scheduler error"))

    def _handle(self, ev: tuple[Any, ...]) -> None:
        kind = ev[0]
        if kind == "request":
            self._on_request(ev[1])
        elif kind == "cancel":
            p = ev[1]
            if p in self._pending:
                self._pending.remove(p)
        elif kind == "release":
            self._on_release(ev[1], ev[2])
        elif kind == "loaded":
            self._on_loaded(ev[1], ev[2])
        elif kind == "load_failed":
            self._on_load_failed(ev[1], ev[2])
        elif kind == "need_room":
            self._on_need_room(ev[1])
        elif kind == "exited":
            self._on_exited(ev[1])
        elif kind == "unloaded":
            r = ev[1]
            self._stopping.discard(r)
            r.unloaded()
        elif kind == "expire":
            r, gen = ev[1], ev[2]
            if r.timer_gen == gen and r.state == "ready" and r.refcount == 0:
                log.info("model expired", extra=kv(model=r.model.short_name))
                self._begin_unload(r)
        elif kind == "failed":
            self._on_failed(ev[1], ev[2])
        elif kind == "health":
            self._on_health(ev[1], ev[2])
        elif kind == "unload":
            self._on_unload(ev[1], ev[2])
        # "tick" only re-runs _schedule

    def _ready(self, key: str) -> _Runner | None:
        """The runner for `key`; one whose process already exited is retired on the spot, so
        a request arriving right after a crash never lands on the corpse."""
        r = self._runners.get(key)
        if (r is not None and r.state in ("ready", "draining") and r.handle is not None
                and r.handle.returncode is not None):
            self._on_exited(r)
            return None
        return r

    def _on_request(self, p: _Pending) -> None:
        if p.future.done():
            return
        r = self._ready(p.key)
        if (r is not None and r.state == "ready" and not needs_reload(r.spec, p.spec)
                and r.refcount < r.spec.num_parallel
                and not any(q.key == p.key for q in self._pending)):
            self._grant(r, p)  # a loaded, compatible runner never waits behind a load
            return
        if len(self._pending) >= self.max_queue:
            p.future.set_exception(ServerBusy())
            return
        self._pending.append(p)

    def _grant(self, r: _Runner, p: _Pending) -> None:
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
        p.future.set_result(_Grant(r, time.monotonic() - p.arrived))

    def _on_release(self, r: _Runner, ok: bool) -> None:
        r.refcount = max(0, r.refcount - 1)
        if not ok:
            log.debug("request on %s ended with a runner failure", r.model.short_name)
        if r.refcount == 0 and r.state in ("ready", "draining"):
            self._on_idle(r)

    def _on_idle(self, r: _Runner) -> None:
        if r.state == "ready" and r.keep_alive == 0 and any(
                p.key == r.key and not p.future.done() and not needs_reload(r.spec, p.spec)
                for p in self._pending):
            return  # keep_alive 0 unloads after the request, not under a queued one for it
        r.armed = True
        if r.state == "draining" or r.keep_alive == 0:
            self._begin_unload(r)
            return
        r.expires_at = keepalive.expiry(_now(), r.keep_alive)
        if r.timer is not None:
            r.timer.cancel()
            r.timer = None
        if not keepalive.is_forever(r.keep_alive):
            r.timer_gen += 1
            r.timer = asyncio.get_running_loop().call_later(
                r.keep_alive, self._post, ("expire", r, r.timer_gen))

    def _begin_unload(self, r: _Runner) -> None:
        if r.state in ("stopping", "dead"):
            return
        if r.timer is not None:
            r.timer.cancel()
            r.timer = None
        r.state = "stopping"
        if self._runners.get(r.key) is r:
            del self._runners[r.key]
        if r.handle is None:
            return
        self._stopping.add(r)
        log.info("unloading model", extra=kv(model=r.model.short_name, pid=r.handle.pid))
        r.tasks.append(asyncio.create_task(self._unload(r), name=f"unload-{r.key}"))

    async def _unload(self, r: _Runner) -> None:
        try:
            assert r.handle is not None
            await r.handle.stop(UNLOAD_GRACE_S)
        finally:
            self._post(("unloaded", r))

    def _on_loaded(self, r: _Runner, handle: RunnerHandle) -> None:
        if self._loading is r:
            self._loading = None
        self._oom_retried.discard(r.key)
        r.handle = handle
        if r.state != "loading" or self._closed:  # unloaded while loading
            r.state = "ready"
            self._begin_unload(r)
            return
        r.state = "ready"
        metrics.observe_load(r.model.short_name, time.monotonic() - r.started, ok=True)
        log.info("llama runner started", extra=kv(
            model=r.model.short_name, pid=handle.pid, seconds=f"{time.monotonic() - r.started:.2f}",
            num_ctx=r.num_ctx, parallel=r.spec.num_parallel))
        r.tasks.append(asyncio.create_task(self._watch(r), name=f"watch-{r.key}"))

    async def _watch(self, r: _Runner) -> None:
        assert r.handle is not None
        await r.handle.wait()
        self._post(("exited", r))

    def _on_load_failed(self, r: _Runner, exc: BaseException) -> None:
        if self._loading is r:
            self._loading = None
        if self._runners.get(r.key) is r:
            del self._runners[r.key]
        r.state = "dead"
        others = [x for x in self._runners.values() if x.state in ("ready", "draining")]
        if is_oom(str(exc)) and others and r.key not in self._oom_retried:
            # Ollama: out of memory with other models resident -> evict them all, retry once.
            log.warning("out of memory loading model, unloading the others and retrying",
                        extra=kv(model=r.model.short_name, evict=len(others)))
            self._oom_retried.add(r.key)
            for x in others:
                self._evict(x)
            return
        self._oom_retried.discard(r.key)
        metrics.observe_load(r.model.short_name, time.monotonic() - r.started, ok=False)
        err = exc if isinstance(exc, OllamaError) else RunnerError(str(exc) or type(exc).__name__)
        log.error("error loading model", extra=kv(model=r.model.short_name, error=err.message))
        for p in list(self._pending):
            if p.key == r.key and not needs_reload(r.spec, p.spec):
                self._pending.remove(p)
                if not p.future.done():
                    p.future.set_exception(err)
        r.unloaded()

    def _on_need_room(self, r: _Runner) -> None:
        if self._loading is r:
            self._loading = None
        if self._runners.get(r.key) is r:
            del self._runners[r.key]
        r.state = "dead"
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

    def _on_exited(self, r: _Runner) -> None:
        if r.state in ("stopping", "dead"):
            return
        msg = r.handle.exit_message() if r.handle is not None else "exited"
        log.warning("runner exited unexpectedly", extra=kv(model=r.model.short_name, error=msg))
        if r.timer is not None:
            r.timer.cancel()
            r.timer = None
        r.state = "dead"
        if self._runners.get(r.key) is r:
            del self._runners[r.key]
        self._record_crash(r.key)
        metrics.observe_runner_crash(r.model.short_name)
        r.unloaded()

    def _on_failed(self, r: _Runner, exc: BaseException) -> None:
        if r.state not in ("ready", "draining") or r.handle is None:
            return
        log.warning("request failed on runner: %r", exc, extra=kv(model=r.model.short_name))
        if r.handle.returncode is not None:
            self._on_exited(r)
            return
        # No new work until /health answers: the process may be dead but not yet reaped.
        r.resume_state, r.state = r.state, "checking"
        r.tasks.append(asyncio.create_task(self._check_health(r)))

    def _on_health(self, r: _Runner, ok: bool) -> None:
        if r.state != "checking":
            return
        if ok and r.handle is not None and r.handle.returncode is None:
            r.state = r.resume_state
            if r.refcount == 0:
                self._on_idle(r)
            return
        log.warning("runner is not healthy, stopping it", extra=kv(
            model=r.model.short_name, pid=r.handle.pid if r.handle else None))
        self._record_crash(r.key)
        metrics.observe_runner_crash(r.model.short_name)
        self._begin_unload(r)

    async def _check_health(self, r: _Runner) -> None:
        assert r.handle is not None and self.session is not None
        ok = False
        with contextlib.suppress(TimeoutError, aiohttp.ClientError):
            async with self.session.get(f"{r.handle.base_url}/health",
                                        timeout=aiohttp.ClientTimeout(total=5)) as resp:
                ok = resp.status == 200
        self._post(("health", r, ok))

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
        if r.state in ("ready", "draining") and r.refcount == 0:
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
                      or any(r.state == "draining" for r in self._runners.values()))
        blocked: set[str] = set()
        for p in list(self._pending):
            if p.future.done():
                self._pending.remove(p)
                continue
            r = self._ready(p.key)
            if r is not None:
                if r.state == "ready" and not needs_reload(r.spec, p.spec):
                    if p.key not in blocked and r.refcount < r.spec.num_parallel:
                        self._pending.remove(p)
                        self._grant(r, p)
                    else:
                        blocked.add(p.key)  # FIFO per model: later ones wait behind this one
                    continue
                if r.state in ("loading", "checking"):
                    continue
                if turn_taken:
                    continue
                turn_taken = True
                if r.state == "ready":  # different runner options: reload once drained
                    log.info("reloading model with new options", extra=kv(
                        model=r.model.short_name, num_ctx=p.spec.num_ctx))
                    r.state = "draining"
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
            active = [x for x in self._runners.values() if x.state != "stopping"]
            if len(active) >= self.max_loaded:
                victim = self._victim()
                if victim is not None:
                    self._evict(victim)
                continue
            self._start_load(p, allow_evict=bool(active))
        for r in self._runners.values():  # loaded for a request that went away meanwhile
            if r.state == "ready" and r.refcount == 0 and not r.armed:
                self._on_idle(r)

    def _victim(self) -> _Runner | None:
        candidates = [r for r in self._runners.values() if r.state in ("ready", "draining")]
        view = pick_victim([RunnerView(r.key, r.keep_alive, r.refcount, str(r.spec.model_path))
                            for r in candidates])
        if view is None:
            return None
        return self._runners.get(view.key)

    def _evict(self, victim: _Runner) -> None:
        if victim.refcount == 0:
            self._begin_unload(victim)
        elif victim.state == "ready":
            victim.state = "draining"  # unloads when its requests finish

    def _arm_tick(self, delay: float) -> None:
        if self._tick is not None:
            self._tick.cancel()
        self._tick = asyncio.get_running_loop().call_later(delay, self._post, ("tick",))

    def _start_load(self, p: _Pending, *, allow_evict: bool) -> None:
        r = _Runner(key=p.key, model=p.model, spec=p.spec, facts=p.facts,
                    keep_alive=p.keep_alive if p.keep_alive is not None
                    else self.default_keep_alive, started=time.monotonic())
        self._runners[r.key] = r
        self._loading = r
        others = [(x.placement, x.handle) for x in self._runners.values() if x is not r]
        r.tasks.append(asyncio.create_task(self._load(r, others, allow_evict),
                                           name=f"load-{r.key}"))

    async def _load(self, r: _Runner, others: list[tuple[Placement | None, Any]],
                    allow_evict: bool) -> None:
        try:
            if isinstance(self._launcher, ProcessLauncher):
                self._launcher.find_runner()  # its variant decides which GPUs count
            # Fresh numbers for every load: free VRAM and RAM change as models come and go.
            inv = await asyncio.to_thread(self._discover)
            inv = self._runner_inventory(_account_for_loaded(inv, others))
            opts = self._estimate_options(r.spec)
            placement = None
            if r.facts is not None:
                placement = place(r.facts, inv, opts, spread=bool(
                    self.settings["OLLAMA_SCHED_SPREAD"]), main_gpu=r.spec.main_gpu)
                log.info("offload decision", extra=kv(**decision_fields(placement, opts)))
                if allow_evict and not _fits(placement, inv):
                    self._post(("need_room", r))
                    return
            r.placement = placement
            cfg = self._launch_config(r, placement, inv)
            assert self._launcher is not None
            handle = await self._launcher.launch(cfg, r.model.short_name)
        except asyncio.CancelledError:
            raise
        except (OllamaError, RunnerNotFound, OSError, ValueError) as e:
            self._post(("load_failed", r, e))
            return
        except Exception as e:  # never wedge the actor on an unexpected launcher bug
            log.exception("unexpected error loading %s", r.model.short_name)
            self._post(("load_failed", r, e))
            return
        self._post(("loaded", r, handle))

    def _estimate_options(self, spec: RunnerSpec) -> EstimateOptions:
        fa = self.settings["OLLAMA_FLASH_ATTENTION"]
        return EstimateOptions(
            num_ctx=spec.num_ctx, num_parallel=spec.num_parallel, num_batch=spec.num_batch,
            kv_cache_type=self.settings["OLLAMA_KV_CACHE_TYPE"], flash_attention=fa != "off",
            num_gpu=spec.num_gpu, gpu_overhead=int(self.settings["OLLAMA_GPU_OVERHEAD"] or 0))

    def _launch_config(self, r: _Runner, placement: Placement | None,
                       inv: Inventory) -> LaunchConfig:
        spec = r.spec
        layers: int | None = None  # None: unknown model facts, let llama.cpp fit it
        if not inv.gpus:
            layers = 0
        elif spec.num_gpu >= 0:
            layers = spec.num_gpu
        elif placement is not None:
            layers = placement.n_gpu_layers
        main_gpu = spec.main_gpu
        split: tuple[int, ...] = ()
        if placement is not None and main_gpu is None:
            main_gpu = placement.main_gpu
            split = placement.tensor_split
        return LaunchConfig(
            model_path=spec.model_path, num_ctx=spec.num_ctx, num_parallel=spec.num_parallel,
            num_batch=spec.num_batch, n_gpu_layers=layers, tensor_split=split,
            gpu_backend=self._variant_libs != (),
            main_gpu=main_gpu if inv.gpus else None, num_thread=spec.num_thread,
            flash_attention=self.settings["OLLAMA_FLASH_ATTENTION"],
            kv_cache_type=self.settings["OLLAMA_KV_CACHE_TYPE"], use_mmap=spec.use_mmap,
            embedding=spec.embedding,
            embedding_model=bool(r.facts and r.facts.embedding_model),
            projectors=spec.projectors, adapters=spec.adapters, alias=r.model.short_name,
            cache_ram_mib=cache_ram_mib(inv.system.total, self.max_loaded),
        )


OOM_MARKERS = ("out of memory", "cudamalloc failed", "failed to allocate", "not enough memory",
               "unable to allocate", "erroroutofdevicememory")


def is_oom(message: str) -> bool:
    """Does a runner's error say it ran out of (device) memory?"""
    low = message.lower()
    return any(m in low for m in OOM_MARKERS)


def _account_for_loaded(inv: Inventory, others: list[tuple[Placement | None, Any]]) -> Inventory:
    """Free memory per GPU (and RAM) = min(reported free, total − what our loaded runners use),
    since a runner that just started may not show up in the driver's numbers yet."""
    used: dict[str, int] = {}
    ram = 0
    for placement, _ in others:
        if placement is None:
            continue
        for g, size in zip(placement.gpus, placement.estimate.gpu_sizes, strict=False):
            used[g.id] = used.get(g.id, 0) + size
        # mmap'd weights count as reclaimable cache in "available" RAM: charge them here
        ram += placement.estimate.total_size - placement.estimate.vram_size
    gpus: list[GpuDevice] = [replace(g, free=max(0, min(g.free, g.total - used.get(g.id, 0))))
                             for g in inv.gpus]
    system = replace(inv.system, free=max(0, min(inv.system.free, inv.system.total - ram)))
    return replace(inv, gpus=tuple(gpus), system=system)


def _fits(placement: Placement, inv: Inventory) -> bool:
    """May this model join the loaded ones? Fully on GPU, or (CPU) within free RAM."""
    if placement.gpus:
        return placement.estimate.fully_loaded
    return placement.estimate.total_size <= inv.system.free
