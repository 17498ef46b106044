"""Everything that happens to the scheduler, as typed values posted to its actor's inbox.

Handlers post RequestArrived/RequestCancelled/Released/RequestFailed/UnloadRequested; the
actor's own tasks and timers post the rest. `Scheduler._handle` dispatches on the type."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from ollamapy.scheduler.launcher import RunnerHandle
from ollamapy.scheduler.state import LoadedRunner, PendingRequest


@dataclass(frozen=True, eq=False)
class RequestArrived:
    pending: PendingRequest


@dataclass(frozen=True, eq=False)
class RequestCancelled:
    pending: PendingRequest


@dataclass(frozen=True, eq=False)
class Released:
    runner: LoadedRunner
    ok: bool  # False: the request ended with a runner failure


@dataclass(frozen=True, eq=False)
class RequestFailed:
    runner: LoadedRunner
    error: BaseException


@dataclass(frozen=True, eq=False)
class UnloadRequested:
    key: str
    future: asyncio.Future[bool]


@dataclass(frozen=True, eq=False)
class Loaded:
    runner: LoadedRunner
    handle: RunnerHandle


@dataclass(frozen=True, eq=False)
class LoadFailed:
    runner: LoadedRunner
    error: BaseException


@dataclass(frozen=True, eq=False)
class NeedRoom:
    """The planned placement does not fit beside the loaded models: evict first."""

    runner: LoadedRunner


@dataclass(frozen=True, eq=False)
class Exited:
    runner: LoadedRunner


@dataclass(frozen=True, eq=False)
class Unloaded:
    runner: LoadedRunner


@dataclass(frozen=True, eq=False)
class Expired:
    runner: LoadedRunner
    generation: int  # stale timers (re-armed since) are ignored


@dataclass(frozen=True, eq=False)
class HealthChecked:
    runner: LoadedRunner
    ok: bool


@dataclass(frozen=True, eq=False)
class Tick:
    """A crash back-off ran out: only re-runs the planner."""


Event = (RequestArrived | RequestCancelled | Released | RequestFailed | UnloadRequested | Loaded
         | LoadFailed | NeedRoom | Exited | Unloaded | Expired | HealthChecked | Tick)
