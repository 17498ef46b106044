"""What the engine needs from the rest of the server, as small Protocols.

The app factory builds the real store and scheduler; the engine sees only these surfaces, so
tests hand it fakes (a real `RunnerClient` against `tests/fake_runner.py`) without monkeypatching.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from ollamapy.errors import OllamaError
from ollamapy.runner.client import RunnerClient
from ollamapy.store.model import Model


class ModelResolver(Protocol):
    """`ModelStore.resolve`: a name to a model, or NotFound."""

    def resolve(self, name: str) -> Model: ...

    def cached(self, name: str) -> Model | None:
        """The resolved model if it is cached and current (cheap: safe on the event loop)."""


class RunnerLease(Protocol):
    """One slot on a ready runner for the length of a request (`scheduler.core.Lease`)."""

    @property
    def client(self) -> RunnerClient: ...

    @property
    def load_duration(self) -> float: ...  # seconds this request waited for the load

    @property
    def num_ctx(self) -> int: ...  # per-slot context length

    @property
    def props(self) -> Mapping[str, Any]: ...  # llama-server /props (chat_template, ...)

    def fail(self, exc: BaseException) -> OllamaError:
        """The runner broke mid-request: report it, get the error to raise (a RunnerError, or
        ServerShuttingDown when the stop was planned)."""
        ...


class RunnerLeaser(Protocol):
    """`scheduler.core.Scheduler`: leases and the unload shortcut."""

    def lease(self, model: Model, options: Mapping[str, Any] | None,
              keep_alive: float | None, *, embedding: bool = False
              ) -> AbstractAsyncContextManager[RunnerLease]: ...

    async def unload(self, model: Model) -> bool: ...


@dataclass(frozen=True, slots=True)
class Services:
    store: ModelResolver
    scheduler: RunnerLeaser
