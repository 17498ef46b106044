"""The long-lived services, built once by the app factory and handed to the route families.

Routes are typed to the small Protocols below (what they actually call), so tests hand them
fakes without monkeypatching and no route module creates or looks up a service itself.
`Services` is the one bundle: the engine's own Protocols (`inference/services.py`: store resolve,
scheduler lease) are satisfied by `services.store` and `services.scheduler`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from ollamapy.config import Settings
from ollamapy.registry.service import Emit, RegistryService
from ollamapy.runner.locate import RunnerLocator
from ollamapy.scheduler import RunnerStatus, Scheduler
from ollamapy.server import metrics
from ollamapy.store.names import ModelName
from ollamapy.store.store import ModelStore


class LoadedModels(Protocol):
    """What /api/ps needs from the scheduler."""

    def ps(self) -> list[RunnerStatus]: ...


class PullPush(Protocol):
    """What /api/pull and /api/push need from the registry service."""

    async def pull(self, name: ModelName, insecure: bool, emit: Emit) -> None: ...

    async def push(self, name: ModelName, insecure: bool, emit: Emit) -> None: ...


@dataclass(frozen=True)
class Services:
    settings: Settings
    store: ModelStore
    scheduler: Scheduler
    registry: RegistryService
    runners: RunnerLocator


def build_services(settings: Settings, *, environ: Mapping[str, str] | None = None) -> Services:
    """Every service, unstarted (the app's start-up hooks start them in order)."""
    store = ModelStore(settings.models_dir)
    runners = RunnerLocator(environ)
    return Services(
        settings=settings,
        store=store,
        scheduler=Scheduler(settings, locator=runners, environ=environ,
                            observer=metrics.OBSERVER),
        registry=RegistryService(store, noprune=settings.noprune),
        runners=runners,
    )
