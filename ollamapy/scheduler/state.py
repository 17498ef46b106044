"""What the scheduler's actor owns: runner state, loaded runners, queued requests, grants.

Only the actor task (core.py) mutates these; handlers see them through a `Lease` or
`Scheduler.ps()`."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from ollamapy.placement.memory import ModelFacts, Placement
from ollamapy.placement.rpc import SplitPlan
from ollamapy.runner.client import RunnerClient
from ollamapy.scheduler.launcher import RunnerHandle
from ollamapy.scheduler.policy import DeviceShare, RunnerSpec
from ollamapy.store.model import Model


class RunnerState(StrEnum):
    LOADING = "loading"
    READY = "ready"  # serving, takes new requests
    DRAINING = "draining"  # serving its current requests, then unloads (evicted or reloading)
    CHECKING = "checking"  # a request failed on it: no new work until /health answers
    STOPPING = "stopping"
    DEAD = "dead"


SERVING = (RunnerState.READY, RunnerState.DRAINING)
GONE = (RunnerState.STOPPING, RunnerState.DEAD)


@dataclass(eq=False)
class PendingRequest:
    model: Model
    spec: RunnerSpec
    keep_alive: float | None
    facts: ModelFacts | None
    future: asyncio.Future[Grant]
    arrived: float

    @property
    def key(self) -> str:
        return str(self.spec.model_path)


@dataclass(eq=False)
class LoadedRunner:
    key: str
    model: Model
    spec: RunnerSpec
    facts: ModelFacts | None
    keep_alive: float
    state: RunnerState = RunnerState.LOADING
    resume_state: RunnerState = RunnerState.READY  # where a health check that passes returns to
    handle: RunnerHandle | None = None
    refcount: int = 0
    expires_at: datetime | None = None
    timer: asyncio.TimerHandle | None = None
    timer_gen: int = 0
    armed: bool = False  # idle bookkeeping (timer or unload) done since the last release
    placement: Placement | None = None
    rpc: SplitPlan | None = None  # set when it runs split over RPC workers (it holds them)
    devices: tuple[DeviceShare, ...] = ()  # where it lives, for /api/ps (only with rpc)
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    unload_waiters: list[asyncio.Future[bool]] = field(default_factory=list)
    started: float = 0.0
    client: RunnerClient | None = None  # set when it is ready: every lease's client

    def unloaded(self) -> None:
        """Tell everyone waiting for this runner to go (`ollamapy stop`) that it is gone."""
        if self.client is not None:
            self.client.close()
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
class Grant:
    runner: LoadedRunner
    load_duration: float
