"""The connection a runner keeps open for its next streamed /completion (runner/spare.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import ClientSession

from ollamapy.runner import spare as spare_mod
from ollamapy.runner.client import RunnerClient
from ollamapy.runner.spare import SpareConnection
from tests.fake_runner import FakeRunner


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeRunner, ClientSession]]:
    runner = await FakeRunner(pieces=["a", "b"]).start()
    async with ClientSession() as s:
        yield runner, s
    await runner.close()


async def _texts(client: RunnerClient) -> list[str]:
    return [ev.get("content", "") async for ev in client.completion({"prompt": "hi"})
            if isinstance(ev, dict)]


async def _filled(sp: SpareConnection) -> None:
    for _ in range(200):
        if sp._proto is not None:
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the spare connection was never opened")


async def test_completions_take_the_spare_and_open_the_next(
        fake: tuple[FakeRunner, ClientSession]) -> None:
    runner, s = fake
    client = RunnerClient(s, runner.url, spare=True)
    sp = client._spare
    assert sp is not None
    assert await _texts(client) == ["a", "b", ""]  # none yet: a fresh connection, then a refill
    await _filled(sp)
    taken = sp._proto
    assert await _texts(client) == ["a", "b", ""]
    assert sp._proto is not taken  # that one was used (and closed by the stream's end)
    await _filled(sp)
    client.close()
    assert sp._proto is None


async def test_a_spare_closed_unread_is_retried_on_a_new_connection(
        fake: tuple[FakeRunner, ClientSession]) -> None:
    """A spare whose server went away without answering (llama-server drops a connection idle
    for 5 s) cannot have run the request: it is sent again on a new connection."""
    runner, s = fake
    got: list[bytes] = []

    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got.append(await reader.read(4))  # the request arrives; no answer, just a close
        writer.close()

    closer = await asyncio.start_server(drop, "127.0.0.1", 0)
    port = closer.sockets[0].getsockname()[1]
    sp = SpareConnection("127.0.0.1", port)
    sp.refill()
    await _filled(sp)
    client = RunnerClient(s, runner.url, spare=True)
    client._spare = sp
    assert await _texts(client) == ["a", "b", ""]
    assert got == [b"POST"]  # sent on the spare first
    assert runner.requests["/completion"] == 1
    sp.close()
    closer.close()


async def test_a_stale_spare_is_not_used(fake: tuple[FakeRunner, ClientSession],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    runner, _ = fake
    sp = SpareConnection("127.0.0.1", runner.port)
    sp.refill()
    await _filled(sp)
    old = sp._proto
    monkeypatch.setattr(spare_mod, "MAX_AGE_S", 0.0)
    assert sp.take() is None
    assert old is not None and old.transport is not None and old.transport.is_closing()
    sp.close()


async def test_an_idle_runner_opens_no_spare(fake: tuple[FakeRunner, ClientSession]) -> None:
    """Completions further apart than MAX_AGE_S would each pay for a spare nobody uses."""
    runner, _ = fake
    sp = SpareConnection("127.0.0.1", runner.port)
    sp._last_take -= 2 * spare_mod.MAX_AGE_S  # the last completion was long ago
    assert sp.take() is None
    assert sp._task is None and sp._proto is None
    assert sp.take() is None  # this one follows the last closely: the runner is busy
    await _filled(sp)
    sp.close()
