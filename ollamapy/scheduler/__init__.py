"""Loads models into llama-server runners on demand and shares them between requests.

`Scheduler.lease(model, options, keep_alive)` is the one entry point handlers use; see core.py.
"""

from ollamapy.scheduler.core import RUNNER_STOPPED, Lease, RunnerStatus, Scheduler
from ollamapy.scheduler.policy import RunnerSpec

__all__ = ["RUNNER_STOPPED", "Lease", "RunnerSpec", "RunnerStatus", "Scheduler"]
