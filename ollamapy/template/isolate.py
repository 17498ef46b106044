"""Where template work runs: in a worker thread within a small step budget (every real model
template fits in it), else in a low-priority worker process with the full limits.

Why a process: a long render is CPU-bound Python; in a thread it still takes the GIL (and, on a
small box, the CPU) from the event loop, so every other request slows while it runs. Pushed to a
niced process, the server keeps answering; the work stays bounded by the template's Limits.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import dataclasses
import multiprocessing
import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from ollamapy.errors import OllamaError
from ollamapy.runner.process import die_with_parent
from ollamapy.template.gotemplate import Template

T = TypeVar("T")

FAST_STEPS = 20_000  # ~10-20 ms of rendering: real templates use a few thousand at most

_pool: concurrent.futures.ProcessPoolExecutor | None = None
_pool_lock = threading.Lock()


def _init(parent_pid: int) -> None:
    """In the worker: die with the server (a SIGKILLed server must not leave it behind, blocked
    on its task queue forever under pid 1), and yield the CPU to it."""
    die_with_parent(parent_pid)()
    os.nice(10)


def pool() -> concurrent.futures.ProcessPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                initializer=_init, initargs=(os.getpid(),))
        return _pool


def shutdown() -> None:
    global _pool
    with _pool_lock:
        if _pool is not None:
            _pool.shutdown(wait=False, cancel_futures=True)
            _pool = None


def with_steps(tmpl: Template, steps: int) -> Template:
    t = copy.copy(tmpl)
    t.limits = dataclasses.replace(tmpl.limits, max_steps=min(steps, tmpl.limits.max_steps))
    return t


def _over_fast_budget(e: BaseException) -> bool:
    msg = e.message if isinstance(e, OllamaError) else str(e)
    return f"limit of {FAST_STEPS} steps" in msg


async def render(fn: Callable[..., T], tmpl: Template, *args: Any) -> T:
    """`fn(tmpl, *args)` (a module-level function that renders `tmpl`), off the event loop."""
    if tmpl.limits.max_steps <= FAST_STEPS:
        return await asyncio.to_thread(fn, tmpl, *args)
    try:
        return await asyncio.to_thread(fn, with_steps(tmpl, FAST_STEPS), *args)
    except Exception as e:
        if not _over_fast_budget(e):
            raise
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(pool(), fn, tmpl, *args)
