"""The scheduler driving real llama-server runners on SmolLM2 (no HTTP server in between)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ollamapy.config import load_settings
from ollamapy.errors import RunnerError, ServerBusy
from ollamapy.scheduler import Lease, Scheduler
from ollamapy.store.model import Model
from tests.procs import alive

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


async def wait_gone(pid: int | None, within: float = 10) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    while alive(pid):
        assert loop.time() < end, f"runner {pid} still alive"
        await asyncio.sleep(0.05)


def make_model(path: Path, name: str) -> Model:
    return Model(name=name, short_name=name, digest=name.encode().hex().ljust(64, "0"),
                 model_path=path, size=path.stat().st_size, modified_at=datetime.now())


@pytest.fixture
def models(runner_binary: Path, model_path: Path, tmp_path: Path) -> Callable[[str], Model]:
    """Models named a, b, ...: each its own path (a symlink to the SmolLM2 GGUF)."""

    def get(name: str) -> Model:
        link = tmp_path / f"{name}.gguf"
        if not link.exists():
            link.symlink_to(model_path)
        return make_model(link, name)

    return get


@pytest.fixture
async def sched() -> AsyncIterator[Callable[..., Any]]:
    made: list[Scheduler] = []

    async def factory(**env: str) -> Scheduler:
        env.setdefault("OLLAMA_CONTEXT_LENGTH", "2048")
        s = Scheduler(load_settings(env))
        await s.start()
        made.append(s)
        return s

    yield factory
    for s in made:
        await s.stop()


def auth(lease: Lease) -> dict[str, str]:
    """The runner's own key: without it llama-server answers 401 (only /health is open)."""
    return {"Authorization": f"Bearer {lease.api_key}"}


async def complete(lease: Lease, n: int = 4, prompt: str = "Hello") -> list[dict[str, Any]]:
    body = {"prompt": prompt, "n_predict": n, "stream": True, "cache_prompt": False,
            "temperature": 0}
    events = []
    try:
        async with lease.session.post(f"{lease.base_url}/completion", json=body,
                                      headers=auth(lease)) as r:
            assert r.status == 200
            async for raw in r.content:
                line = raw.decode().strip()
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
    except (aiohttp.ClientError, ConnectionError) as e:
        raise lease.fail(e) from None
    return events


async def test_load_on_first_use_then_reuse(sched, models):
    s = await sched()
    a = models("a")
    async with s.lease(a, {}, None) as lease:
        pid = lease.pid
        assert lease.load_duration > 0 and lease.num_ctx == 2048
        assert lease.props["total_slots"] == 1
        assert (await complete(lease))[-1]["stop"] is True
    async with s.lease(a, {"temperature": 0.5}, None) as lease:
        assert lease.pid == pid  # the same process: reused, not reloaded
    await asyncio.sleep(0.05)
    [st] = s.ps()
    assert st.model is a and st.context_length == 2048 and st.pid == pid
    # sizes parsed from the runner's own log: weights + KV + compute, all on the CPU
    assert st.size > 92 * 1024 * 1024 and st.size_vram == 0


async def test_two_models_at_once_then_max_loaded_one_swaps(sched, models):
    s = await sched()
    async with s.lease(models("a"), {}, None) as la, s.lease(models("b"), {}, None) as lb:
        assert la.pid != lb.pid and alive(la.pid) and alive(lb.pid)
    assert len(s.ps()) == 2
    await s.stop()

    one = await sched(OLLAMA_MAX_LOADED_MODELS="1")
    async with one.lease(models("a"), {}, None) as la:
        pid_a = la.pid
    async with one.lease(models("b"), {}, None) as lb:
        assert not alive(pid_a) and alive(lb.pid)
    assert [st.model.name for st in one.ps()] == ["b"]


async def test_keep_alive_expiry_and_zero(sched, models):
    s = await sched()
    async with s.lease(models("a"), {}, 1.0) as lease:
        pid = lease.pid
    assert alive(pid)
    await wait_gone(pid, within=8)
    assert s.ps() == []
    async with s.lease(models("a"), {}, 0) as lease:
        pid = lease.pid
        await complete(lease)
    await wait_gone(pid, within=8)


async def test_num_ctx_change_reloads(sched, models):
    s = await sched()
    async with s.lease(models("a"), {"num_ctx": 1024}, None) as lease:
        pid, ctx = lease.pid, lease.num_ctx
    assert ctx == 1024
    async with s.lease(models("a"), {"num_ctx": 512, "top_k": 3}, None) as lease:
        assert lease.pid != pid and lease.num_ctx == 512  # read back from /props
    assert not alive(pid)
    async with s.lease(models("a"), {"num_ctx": 100000}, None) as lease:
        assert lease.num_ctx == 8192  # clamped to the model's training context


async def test_runner_killed_mid_stream_then_recovers(sched, models):
    s = await sched()
    a = models("a")
    with pytest.raises(RunnerError) as e:
        async with s.lease(a, {}, None) as lease:
            pid = lease.pid
            body = {"prompt": "Tell me a long story", "n_predict": 400, "stream": True,
                    "ignore_eos": True, "cache_prompt": False}
            try:
                async with lease.session.post(f"{lease.base_url}/completion", json=body,
                                              headers=auth(lease)) as r:
                    async for raw in r.content:
                        if raw.startswith(b"data: "):
                            os.kill(pid, signal.SIGKILL)
            except (aiohttp.ClientError, ConnectionError) as err:
                raise lease.fail(err) from None
    assert e.value.message.startswith("model runner has unexpectedly stopped")
    await wait_gone(pid)
    async with s.lease(a, {}, None) as lease:
        assert lease.pid != pid
        assert (await complete(lease))[-1]["stop"] is True


async def test_corrupt_model_gives_a_clear_load_error(sched, tmp_path: Path, runner_binary):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\xff" * 200)
    s = await sched()
    with pytest.raises(RunnerError) as e:
        async with s.lease(make_model(bad, "bad"), {}, None):
            pass
    assert "llama runner process has terminated: exit status 1" in e.value.message
    assert "model" in e.value.message.lower()
    assert s.ps() == []


async def test_tiny_queue_answers_busy(sched, models):
    s = await sched(OLLAMA_MAX_QUEUE="1")
    a = models("a")
    async with s.lease(a, {}, None):
        pass

    async def one() -> str:
        try:
            async with s.lease(a, {}, None) as lease:
                await complete(lease, n=16)
                return "ok"
        except ServerBusy as e:
            assert e.status == 503
            return "busy"

    results = await asyncio.gather(*[one() for _ in range(5)])
    assert results.count("ok") >= 2 and results.count("busy") >= 1, results


async def test_port_taken_is_retried_on_another(runner_binary: Path, model_path: Path,
                                                tmp_path: Path):
    import socket

    from ollamapy.runner.process import child_env, free_port, launch

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    ports = [taken.getsockname()[1], free_port()]
    try:
        async with aiohttp.ClientSession() as session:
            proc = await launch(runner_binary, ["--model", str(model_path), "-c", "512",
                                                "-np", "1", "--no-ui", "--offline"],
                                env=child_env(os.environ, tmp_path), name="bind",
                                session=session, stall_timeout=60,
                                port_factory=lambda: ports.pop(0))
            try:
                assert proc.port != taken.getsockname()[1] and ports == []
                async with session.get(f"{proc.base_url}/health") as r:
                    assert r.status == 200
            finally:
                await proc.stop()
    finally:
        taken.close()


async def test_back_to_back_streams_on_the_lease_session(sched, models):
    """llama-server drops the connection after a stream; the lease session must not reuse it
    (with a keep-alive pool every second request failed with ServerDisconnectedError)."""
    s = await sched()
    for i in range(10):
        async with s.lease(models("a"), {}, None) as lease:
            events = await complete(lease, n=2, prompt=f"Count {i}")
            assert events[-1]["stop"] is True
