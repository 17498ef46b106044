"""Loop watchdog: an async test fails if any event-loop callback blocks the loop too long.

In the spirit of aiohttp's blocking detector (issue 11: nothing request- or model-controlled may
run on the loop unbounded). Every callback the test's loop runs (`Handle._run`: task steps,
call_soon/call_later callbacks, I/O callbacks) is timed; one that takes longer than
OLLAMAPY_WATCHDOG_MS (default 100) fails the test with the callback named.

On a shared 2-core box a callback can be descheduled mid-run, so wall time alone would flag
innocent code: a callback counts when it used the limit in CPU time (blocking work), or when its
wall time passes 5x the limit (a blocking wait: a lock, a sleep, a synchronous read).
Opt out per test only where a test blocks on purpose:
`@pytest.mark.allow_blocking(reason="...")` (the reason is required).

Register with `pytest_plugins = ["tests.watchdog"]` in tests/conftest.py.
"""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

LIMIT_S = float(os.environ.get("OLLAMAPY_WATCHDOG_MS", "100")) / 1000


@dataclass
class Slow:
    what: str
    wall_s: float
    cpu_s: float


def is_blocking(wall_s: float, cpu_s: float, limit_s: float = LIMIT_S) -> bool:
    """The verdict for one callback (pure, so its rule is unit-tested)."""
    return (wall_s >= limit_s and cpu_s >= limit_s) or wall_s >= 5 * limit_s


class Watchdog:
    """Times the callbacks run on the test's thread while active; loops of other threads (a
    test registry, a fake runner) are left alone."""

    def __init__(self) -> None:
        self.active = False
        self.thread = threading.get_ident()
        self.slow: list[Slow] = []
        self._orig: Callable[[asyncio.Handle], None] | None = None
        self.gc_s = 0.0  # seconds spent in garbage collection on the watched thread
        self._gc_start: float | None = None

    def install(self) -> None:
        if self._orig is not None:
            return
        orig = asyncio.Handle._run
        self._orig = orig
        dog = self

        def _run(handle: asyncio.Handle) -> None:
            if not dog.active or threading.get_ident() != dog.thread:
                orig(handle)
                return
            wall0, cpu0, gc0 = time.perf_counter(), time.thread_time(), dog.gc_s
            try:
                orig(handle)
            finally:
                # a full collection of the whole test session's heap can land in any
                # callback: it is the test process's cost, not the callback's (~200 ms seen)
                paused = dog.gc_s - gc0
                wall = time.perf_counter() - wall0 - paused
                cpu = time.thread_time() - cpu0 - paused
                if is_blocking(wall, cpu):
                    dog.slow.append(Slow(_describe(handle), wall, cpu))

        asyncio.Handle._run = _run  # type: ignore[method-assign]
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        # only full (generation 2) collections: young ones are paid by whoever allocates
        if threading.get_ident() != self.thread or info.get("generation") != 2:
            return
        if phase == "start":
            self._gc_start = time.perf_counter()
        elif self._gc_start is not None:
            self.gc_s += time.perf_counter() - self._gc_start
            self._gc_start = None

    def uninstall(self) -> None:
        if self._orig is not None:
            asyncio.Handle._run = self._orig  # type: ignore[method-assign]
            self._orig = None
            gc.callbacks.remove(self._on_gc)


def _describe(handle: asyncio.Handle) -> str:
    cb: Any = getattr(handle, "_callback", None)
    owner = getattr(cb, "__self__", None)
    if isinstance(owner, asyncio.Task):
        coro = owner.get_coro()
        code = getattr(coro, "cr_code", None) or getattr(coro, "gi_code", None)
        if code is not None:
            return f"task {owner.get_name()} running {code.co_qualname} " \
                   f"({code.co_filename}:{code.co_firstlineno})"
        return f"task {owner.get_name()}"
    return repr(handle)


_DOG = Watchdog()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "allow_blocking(reason): this test blocks the event loop on purpose "
        "(the loop watchdog does not fail it); the reason is required")


@pytest.fixture(autouse=True)
def _loop_watchdog_marker(request: pytest.FixtureRequest) -> None:
    marker = request.node.get_closest_marker("allow_blocking")
    if marker is not None and not marker.kwargs.get("reason") and not marker.args:
        pytest.fail("@pytest.mark.allow_blocking needs a reason=")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    if item.get_closest_marker("allow_blocking") is not None or not _is_async(item):
        return (yield)
    _DOG.install()
    _DOG.thread = threading.get_ident()
    _DOG.slow.clear()
    _DOG.active = True
    try:
        res = yield
    finally:
        _DOG.active = False
    found = list(_DOG.slow)
    _DOG.slow.clear()
    if found:
        lines = "\n".join(f"  {s.wall_s * 1000:.0f} ms wall, {s.cpu_s * 1000:.0f} ms cpu: "
                          f"{s.what}" for s in found[:10])
        pytest.fail(f"event loop blocked by {len(found)} callback(s) over "
                    f"{LIMIT_S * 1000:.0f} ms:\n{lines}", pytrace=False)
    return res


def _is_async(item: pytest.Item) -> bool:
    fn = getattr(item, "obj", None)
    return asyncio.iscoroutinefunction(fn)
