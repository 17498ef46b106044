"""Scheduler logic with a fake runner factory: no processes, every decision observable."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from ollamapy.config import load_settings
from ollamapy.errors import OllamaError, RunnerError, ServerBusy
from ollamapy.keepalive import FOREVER
from ollamapy.placement.gpu import GiB, Inventory, SystemInfo
from ollamapy.runner.flags import LaunchConfig
from ollamapy.scheduler import Scheduler
from ollamapy.scheduler.events import Released
from ollamapy.store.model import Model

pytestmark = pytest.mark.timeout(30)

CPU = Inventory(SystemInfo(total=64 * GiB, free=48 * GiB, cores=4, threads=8))


class FakeHandle:
    def __init__(self, cfg: LaunchConfig, pid: int) -> None:
        self.cfg = cfg
        self._pid = pid
        self.base_url = f"http://127.0.0.1:{40000 + pid}"
        self.api_key = f"key-{pid}"
        self.props: dict[str, Any] = {"default_generation_settings": {"n_ctx": cfg.num_ctx},
                                      "total_slots": cfg.num_parallel}
        self._rc: int | None = None
        self._exited = asyncio.Event()
        self.stops = 0

    @property
    def pid(self) -> int:
        return self._pid

    @property
    def returncode(self) -> int | None:
        return self._rc

    @property
    def num_ctx(self) -> int:
        return self.cfg.num_ctx

    @property
    def alive(self) -> bool:
        return self._rc is None

    def sizes(self) -> tuple[int, int]:
        return 1000 + self.cfg.num_ctx, 0

    async def wait(self) -> int:
        await self._exited.wait()
        assert self._rc is not None
        return self._rc

    async def stop(self, grace: float) -> None:
        self.stops += 1
        if self._rc is None:
            self._rc = 0
        self._exited.set()

    def crash(self) -> None:
        self._rc = -9
        self._exited.set()

    def exit_message(self) -> str:
        return f"llama runner process has terminated: exit status {self._rc}"

    def last_error(self) -> str:
        return "GGML_ASSERT failed" if self._rc else ""


class FakeLauncher:
    def __init__(self) -> None:
        self.handles: list[FakeHandle] = []
        self.delay = 0.0
        self.fail: str | None = None
        self.gate: asyncio.Event | None = None

    async def launch(self, cfg: LaunchConfig, name: str) -> FakeHandle:
        if self.gate is not None:
            await self.gate.wait()
        await asyncio.sleep(self.delay)
        if self.fail:
            raise RunnerError(self.fail)
        h = FakeHandle(cfg, len(self.handles) + 1)
        self.handles.append(h)
        return h

    def alive(self) -> list[FakeHandle]:
        return [h for h in self.handles if h.alive]


def model(name: str, path: str | None = None) -> Model:
    return Model(name=name, short_name=name, digest=name.encode().hex().ljust(64, "0"),
                 model_path=Path(path or f"/models/{name}"), size=123,
                 modified_at=datetime(2026, 1, 1))


@pytest.fixture
async def make() -> AsyncIterator[Any]:
    made: list[Scheduler] = []

    async def factory(observer: Any = None, **env: str) -> tuple[Scheduler, FakeLauncher]:
        launcher = FakeLauncher()
        s = Scheduler(load_settings(env), launcher=launcher, discover_fn=lambda: CPU,
                      facts_fn=lambda m: None, observer=observer)
        await s.start()
        made.append(s)
        return s, launcher

    yield factory
    for s in made:
        await s.stop()


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)
    await asyncio.sleep(0.01)


async def test_loads_on_first_use_then_reuses(make):
    s, launcher = await make()
    a = model("a")
    async with s.lease(a, {}, None) as lease:
        assert lease.base_url == launcher.handles[0].base_url
        assert lease.num_ctx == 4096  # CPU host default
        assert lease.model is a and lease.props["total_slots"] == 1
        assert lease.session is s.session
    async with s.lease(a, {"temperature": 0.1, "seed": 3}, None) as lease:  # sampling only
        assert lease.base_url == launcher.handles[0].base_url
        assert lease.load_duration < 0.5
    assert len(launcher.handles) == 1
    cfg = launcher.handles[0].cfg
    assert cfg.n_gpu_layers == 0 and cfg.alias == "a" and cfg.num_parallel == 1


async def test_two_models_at_once_and_ps(make):
    s, launcher = await make()
    async with s.lease(model("a"), {}, None), s.lease(model("b"), {}, 600):
        assert len(launcher.alive()) == 2
        names = [st.model.name for st in s.ps()]
        assert sorted(names) == ["a", "b"]
    await settle()
    ps = s.ps()
    assert ps[0].model.name == "b"  # longest expiry first
    assert ps[0].size == 1000 + 4096 and ps[0].size_vram == 0 and ps[0].context_length == 4096


async def test_max_loaded_models_one_swaps(make):
    s, launcher = await make(OLLAMA_MAX_LOADED_MODELS="1")
    async with s.lease(model("a"), {}, None):
        pass
    async with s.lease(model("b"), {}, None):
        assert [h.cfg.model_path.name for h in launcher.alive()] == ["b"]
    assert launcher.handles[0].stops == 1
    assert [st.model.name for st in s.ps()] == ["b"]


async def test_eviction_waits_for_in_flight_requests(make):
    s, launcher = await make(OLLAMA_MAX_LOADED_MODELS="1")
    release_a = asyncio.Event()
    got_b = asyncio.Event()

    async def use_a() -> None:
        async with s.lease(model("a"), {}, None):
            await release_a.wait()

    async def use_b() -> None:
        async with s.lease(model("b"), {}, None):
            got_b.set()

    ta = asyncio.create_task(use_a())
    await settle()
    tb = asyncio.create_task(use_b())
    await settle()
    assert not got_b.is_set() and launcher.handles[0].alive  # never kill a busy runner
    release_a.set()
    await asyncio.wait_for(asyncio.gather(ta, tb), 5)
    assert got_b.is_set() and not launcher.handles[0].alive


async def test_eviction_prefers_idle_and_shortest_keep_alive(make):
    s, launcher = await make(OLLAMA_MAX_LOADED_MODELS="2")
    async with s.lease(model("long"), {}, 3600):
        pass
    async with s.lease(model("short"), {}, 60):
        pass
    async with s.lease(model("new"), {}, None):
        alive = sorted(h.cfg.model_path.name for h in launcher.alive())
    assert alive == ["long", "new"]


async def test_keep_alive_expiry_unloads(make):
    s, launcher = await make()
    async with s.lease(model("a"), {}, 0.2):
        await asyncio.sleep(0.3)  # the timer never fires while a request is in flight
        assert launcher.handles[0].alive
    assert launcher.handles[0].alive
    await asyncio.sleep(0.4)
    assert not launcher.handles[0].alive and s.ps() == []


async def test_keep_alive_zero_unloads_after_the_request(make):
    s, launcher = await make()
    async with s.lease(model("a"), {}, 0):
        assert launcher.handles[0].alive
    await settle()
    assert not launcher.handles[0].alive


async def test_keep_alive_zero_hands_the_runner_to_a_queued_request(make):
    """keep_alive 0 unloads after the request, but not under a request already queued for
    the same runner: that one gets it (no reload), and the runner unloads after it."""
    s, launcher = await make()
    release = asyncio.Event()

    async def first() -> None:
        async with s.lease(model("a"), {}, 0):
            await release.wait()

    t1 = asyncio.create_task(first())
    await settle()
    t2 = asyncio.create_task(s.lease(model("a"), {}, None).__aenter__())
    await settle()
    assert not t2.done()  # one slot: queued behind the first request
    release.set()
    await asyncio.wait_for(t1, 5)
    lease = await asyncio.wait_for(t2, 5)
    assert len(launcher.handles) == 1 and launcher.handles[0].alive
    assert lease.base_url == launcher.handles[0].base_url
    s._post(Released(lease._runner, True))
    await settle()
    assert not launcher.handles[0].alive and len(launcher.handles) == 1


async def test_omitted_keep_alive_keeps_the_runner_duration(make):
    s, _ = await make(OLLAMA_KEEP_ALIVE="5m")
    async with s.lease(model("a"), {}, FOREVER):
        pass
    async with s.lease(model("a"), {}, None):  # does not reset to the 5m default
        pass
    await settle()
    exp = s.ps()[0].expires_at
    assert exp.year > datetime.now().year + 200
    async with s.lease(model("a"), {}, 60):
        pass
    await settle()
    assert (s.ps()[0].expires_at - datetime.now().astimezone()).total_seconds() < 61


async def test_num_ctx_change_reloads_sampling_change_does_not(make):
    s, launcher = await make()
    async with s.lease(model("a"), {"num_ctx": 2048}, None) as lease:
        assert lease.num_ctx == 2048
    async with s.lease(model("a"), {"num_ctx": 2048, "top_k": 5}, None):
        pass
    assert len(launcher.handles) == 1
    async with s.lease(model("a"), {"num_ctx": 1024}, None) as lease:
        assert lease.num_ctx == 1024
    assert len(launcher.handles) == 2 and not launcher.handles[0].alive
    assert launcher.handles[1].cfg.num_ctx == 1024


async def test_reload_waits_for_the_old_runner_to_drain(make):
    s, launcher = await make()
    release = asyncio.Event()

    async def hold() -> None:
        async with s.lease(model("a"), {"num_ctx": 2048}, None):
            await release.wait()

    t1 = asyncio.create_task(hold())
    await settle()
    t2 = asyncio.create_task(s.lease(model("a"), {"num_ctx": 1024}, None).__aenter__())
    await settle()
    assert not t2.done() and len(launcher.handles) == 1
    release.set()
    await asyncio.wait_for(t1, 5)
    await asyncio.wait_for(t2, 5)
    assert launcher.handles[1].cfg.num_ctx == 1024 and not launcher.handles[0].alive


async def test_parallel_slots_and_queue_full(make):
    s, launcher = await make(OLLAMA_NUM_PARALLEL="2", OLLAMA_MAX_QUEUE="1")
    async with s.lease(model("a"), {}, None):  # loaded: requests now go straight to slots
        pass
    release = asyncio.Event()
    entered = 0

    async def use() -> None:
        nonlocal entered
        async with s.lease(model("a"), {}, None):
            entered += 1
            await release.wait()

    tasks = [asyncio.create_task(use()) for _ in range(5)]
    await settle()
    await asyncio.sleep(0.05)
    assert entered == 2  # two slots busy, one queued, two refused
    busy = [t for t in tasks if t.done()]
    assert len(busy) == 2
    for t in busy:
        assert isinstance(t.exception(), ServerBusy)
        assert t.exception().status == 503
        assert str(t.exception()) == (
            "server busy, please try again.  maximum pending requests exceeded")
    release.set()
    await asyncio.wait_for(asyncio.gather(*[t for t in tasks if t not in busy]), 5)
    assert entered == 3 and len(launcher.handles) == 1
    assert launcher.handles[0].cfg.num_parallel == 2 and launcher.handles[0].cfg.num_ctx == 4096


async def test_loaded_model_never_waits_behind_a_load(make):
    s, launcher = await make()
    async with s.lease(model("a"), {}, None):
        pass
    launcher.gate = asyncio.Event()
    slow = asyncio.create_task(s.lease(model("b"), {}, None).__aenter__())
    await settle()
    assert not slow.done()
    async with asyncio.timeout(1):
        async with s.lease(model("a"), {}, None) as lease:
            assert lease.base_url == launcher.handles[0].base_url
    launcher.gate.set()
    await asyncio.wait_for(slow, 5)


async def test_load_failure_is_reported_to_every_waiter(make):
    s, launcher = await make()
    launcher.fail = "llama runner process has terminated: exit status 1: error loading model"
    launcher.delay = 0.05

    async def use() -> None:
        async with s.lease(model("bad"), {}, None):
            pass

    results = await asyncio.gather(use(), use(), return_exceptions=True)
    for r in results:
        assert isinstance(r, RunnerError) and "error loading model" in r.message
    assert s.ps() == []
    launcher.fail = None  # fixed: the next request loads fine
    async with s.lease(model("bad"), {}, None):
        pass


async def test_cancel_while_queued_or_loading_does_not_wedge(make):
    s, launcher = await make()
    launcher.gate = asyncio.Event()
    t = asyncio.create_task(s.lease(model("a"), {}, None).__aenter__())
    await settle()
    t.cancel()
    with pytest.raises(asyncio.CancelledError):
        await t
    launcher.gate.set()
    await settle()
    # the load finished for nobody: the runner stays (idle, with its keep_alive timer)
    async with asyncio.timeout(2):
        async with s.lease(model("a"), {}, None):
            pass
    assert len(launcher.handles) == 1


async def test_runner_death_mid_request_then_recovery(make):
    s, launcher = await make()
    with pytest.raises(RunnerError) as e:
        async with s.lease(model("a"), {}, None) as lease:
            launcher.handles[0].crash()
            await settle()
            raise lease.fail(ConnectionResetError("reset"))
    assert e.value.message.startswith("model runner has unexpectedly stopped")
    assert "GGML_ASSERT" in e.value.message
    await settle()
    assert s.ps() == []
    async with s.lease(model("a"), {}, None) as lease:
        assert lease.base_url == launcher.handles[1].base_url


async def test_idle_runner_death_is_noticed(make):
    s, launcher = await make()
    async with s.lease(model("a"), {}, None):
        pass
    launcher.handles[0].crash()
    await settle()
    assert s.ps() == []


async def test_observer_hears_loads_failures_and_crashes(make):
    """What /metrics counts comes from the scheduler through its observer hook (the scheduler
    imports nothing of the server)."""
    heard: list[tuple[Any, ...]] = []

    class Observer:
        def load_finished(self, model: str, seconds: float, ok: bool) -> None:
            heard.append(("load", model, ok, seconds >= 0))

        def runner_crashed(self, model: str) -> None:
            heard.append(("crash", model))

    s, launcher = await make(observer=Observer())
    async with s.lease(model("a"), {}, None):
        pass
    launcher.handles[0].crash()
    await settle()
    launcher.fail = "llama runner process has terminated: exit status 1: error loading model"
    with pytest.raises(RunnerError):
        async with s.lease(model("b"), {}, None):
            pass
    assert heard == [("load", "a", True, True), ("crash", "a"), ("load", "b", False, True)]


async def test_crash_loop_backs_off(make):
    s, launcher = await make()
    for _ in range(2):
        async with s.lease(model("a"), {}, None):
            pass
        launcher.handles[-1].crash()
        await settle()
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    async with s.lease(model("a"), {}, None):
        pass
    assert loop.time() - t0 >= 0.4  # second crash in a row: wait 0.5 s before reloading


async def test_unload_without_loading(make):
    s, launcher = await make()
    assert await s.unload(model("a")) is False
    assert launcher.handles == []
    async with s.lease(model("a"), {}, None):
        pass
    assert await s.unload(model("a")) is True
    assert not launcher.handles[0].alive and s.ps() == []


async def test_load_only_lease(make):
    s, launcher = await make()
    async with s.lease(model("a"), {}, None) as lease:  # empty prompt: load, nothing else
        assert lease.load_duration >= 0
    assert [st.model.name for st in s.ps()] == ["a"] and launcher.handles[0].alive


async def test_embedding_request_reloads_with_embeddings(make):
    s, launcher = await make()
    async with s.lease(model("a"), {}, None):
        pass
    async with s.lease(model("a"), {}, None, embedding=True):
        pass
    assert [h.cfg.embedding for h in launcher.handles] == [False, True]
    async with s.lease(model("a"), {}, None):  # an --embeddings runner also completes
        pass
    assert len(launcher.handles) == 2


async def test_shutdown_stops_runners_and_fails_waiters(make):
    s, launcher = await make()
    async with s.lease(model("a"), {}, None):
        pass
    launcher.gate = asyncio.Event()
    waiting = asyncio.create_task(s.lease(model("b"), {}, None).__aenter__())
    await settle()
    await s.stop()
    assert launcher.alive() == []
    with pytest.raises((OllamaError, asyncio.CancelledError)):
        await waiting
    with pytest.raises(OllamaError):
        async with s.lease(model("a"), {}, None):
            pass


async def test_memory_pressure_evicts_and_waits_without_spinning():
    from ollamapy.placement.memory import ModelFacts

    big = ModelFacts(architecture="llama", block_count=10, context_length=4096,
                     embedding_length=512, head_count=8, head_count_kv=(8,) * 10, key_length=64,
                     value_length=64, vocab_size=1000, layer_bytes=(GiB,) * 10,
                     output_bytes=GiB)
    small_ram = Inventory(SystemInfo(total=16 * GiB, free=16 * GiB))
    calls = 0

    def discover() -> Inventory:
        nonlocal calls
        calls += 1
        return small_ram

    launcher = FakeLauncher()
    s = Scheduler(load_settings({}), launcher=launcher, discover_fn=discover,
                  facts_fn=lambda m: big)
    await s.start()
    try:
        async with s.lease(model("a"), {}, None):
            pass
        assert len(launcher.alive()) == 1  # the first model always loads
        release = asyncio.Event()

        async def hold_a() -> None:
            async with s.lease(model("a"), {}, None):
                await release.wait()

        ta = asyncio.create_task(hold_a())
        await settle()
        tb = asyncio.create_task(s.lease(model("b"), {}, None).__aenter__())
        await asyncio.sleep(0.2)
        assert not tb.done() and launcher.handles[0].alive
        assert calls < 6  # waiting for `a` to drain, not re-planning in a loop
        release.set()
        await asyncio.wait_for(ta, 5)
        await asyncio.wait_for(tb, 5)
        assert [h.cfg.model_path.name for h in launcher.alive()] == ["b"]
    finally:
        await s.stop()


async def test_failed_runner_that_is_unreachable_is_replaced(make):
    s, launcher = await make()
    with pytest.raises(RunnerError):
        async with s.lease(model("a"), {}, None) as lease:
            # alive as far as we know, but nothing answers its /health: a wedged runner
            raise lease.fail(ConnectionResetError("reset"))
    async with asyncio.timeout(10):
        async with s.lease(model("a"), {}, None) as lease:
            assert lease.base_url == launcher.handles[1].base_url
    assert not launcher.handles[0].alive and launcher.handles[0].stops == 1


async def test_missing_runner_variant_is_a_clear_load_error():
    s = Scheduler(load_settings({"OLLAMA_LLM_LIBRARY": "cuda"}), discover_fn=lambda: CPU,
                  facts_fn=lambda m: None, environ={"PATH": ""})
    await s.start()
    try:
        with pytest.raises(RunnerError) as e:
            async with s.lease(model("a"), {}, None):
                pass
        assert e.value.status == 500 and "runner variant 'cuda' not found" in e.value.message
    finally:
        await s.stop()


async def test_out_of_memory_evicts_the_others_and_retries_once(make):
    s, launcher = await make()
    async with s.lease(model("a"), {}, None):
        pass
    real_launch = launcher.launch
    attempts: list[str] = []

    async def oom_once(cfg: LaunchConfig, name: str) -> FakeHandle:
        attempts.append(name)
        if len(attempts) == 1:
            raise RunnerError("llama runner process has terminated: exit status 1: "
                              "ggml_backend_cuda_buffer_type_alloc_buffer: CUDA out of memory")
        return await real_launch(cfg, name)

    launcher.launch = oom_once  # type: ignore[method-assign]
    async with s.lease(model("b"), {}, None) as lease:
        assert lease.base_url == launcher.handles[1].base_url
    assert attempts == ["b", "b"] and not launcher.handles[0].alive

    async def always_oom(cfg: LaunchConfig, name: str) -> FakeHandle:
        raise RunnerError("cudaMalloc failed: out of memory")

    launcher.launch = always_oom  # type: ignore[method-assign]
    with pytest.raises(RunnerError, match="out of memory"):  # alone and still OOM: an error
        async with s.lease(model("c"), {}, None):
            pass


async def test_huge_keep_alive_is_forever_not_a_hang(make):
    s, launcher = await make()
    async with asyncio.timeout(2):
        async with s.lease(model("a"), {}, 1e12):
            pass
    await settle()
    assert launcher.handles[0].alive
    assert s.ps()[0].expires_at.year > datetime.now().year + 200


async def test_a_scheduler_bug_fails_the_request_instead_of_hanging_it(make, monkeypatch):
    s, _ = await make()

    def broken(p):
        raise RuntimeError("bug")

    monkeypatch.setattr(s, "_on_request", broken)
    async with asyncio.timeout(2):
        with pytest.raises(OllamaError, match="internal scheduler error") as e:
            async with s.lease(model("a"), {}, None):
                pass
    assert e.value.status == 500
    monkeypatch.undo()
    async with asyncio.timeout(2):  # the actor is still alive
        async with s.lease(model("a"), {}, None):
            pass


async def test_a_stream_cut_by_shutdown_says_the_server_is_shutting_down(make):
    """Issue 16: a planned stop (SIGTERM, systemctl restart) ends in-flight streams with
    "server is shutting down", not "model runner has unexpectedly stopped"."""
    from ollamapy.errors import ServerShuttingDown

    s, launcher = await make()
    with pytest.raises(ServerShuttingDown) as e:
        async with s.lease(model("a"), {}, None) as lease:
            await s.stop()  # what the server's on_shutdown does under open streams
            assert not launcher.handles[0].alive
            raise lease.fail(ConnectionResetError("runner went away"))
    assert e.value.message == "server is shutting down" and e.value.status == 503
    assert s.closed


async def test_lease_carries_the_runner_key_and_slots_follow_debug(make):
    """Requests authenticate to their runner; /slots (prompts of every slot) only when debugging."""
    s, launcher = await make()
    async with s.lease(model("a"), {}, None) as lease:
        assert lease.api_key == launcher.handles[0].api_key == "key-1"
    assert launcher.handles[0].cfg.slots is False
    s2, launcher2 = await make(OLLAMA_DEBUG="1")
    async with s2.lease(model("a"), {}, None):
        assert launcher2.handles[0].cfg.slots is True


async def test_a_lease_caught_by_shutdown_while_reading_facts_fails(make):
    """`lease` awaits the model's facts (a thread on a cache miss) before it posts the request:
    a stop in that window must fail it, not leave it waiting on an inbox nobody reads."""
    s, _launcher = await make()
    reading, go_on = asyncio.Event(), asyncio.Event()

    async def slow_facts(_m):  # type: ignore[no-untyped-def]
        reading.set()
        await go_on.wait()
        return None

    s._facts = slow_facts  # type: ignore[method-assign]
    waiting = asyncio.create_task(s.lease(model("a"), {}, None).__aenter__())
    await reading.wait()
    await s.stop()
    go_on.set()
    done, _ = await asyncio.wait({waiting}, timeout=10)
    if not done:
        waiting.cancel()
    assert done, "the lease hung after shutdown"
    with pytest.raises(OllamaError, match="server is shutting down"):
        waiting.result()
