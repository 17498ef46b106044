"""What the scheduler tells the outside about its runners' lives (metrics listen here).

The scheduler calls these from its actor, so an observer must be quick and never raise; the
scheduler knows nothing of who listens (server/metrics.py provides the one real observer).
"""

from __future__ import annotations

from typing import Protocol


class SchedulerObserver(Protocol):
    def load_finished(self, model: str, seconds: float, ok: bool) -> None:
        """A load ended: its runner is ready (ok) or the load failed for good."""
        ...

    def runner_crashed(self, model: str) -> None:
        """A runner exited unexpectedly or stopped answering /health."""
        ...


class NoObserver:
    """The default: nobody listens."""

    def load_finished(self, model: str, seconds: float, ok: bool) -> None:
        pass

    def runner_crashed(self, model: str) -> None:
        pass
