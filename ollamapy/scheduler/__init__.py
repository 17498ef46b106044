"""Loads models into llama-server runners on demand and shares them between requests.

`Scheduler.lease(model, options, keep_alive)` is the one entry point handlers use; see core.py.
state.py holds what the actor owns, events.py what it reacts to, policy.py its pure decisions.
"""

from ollamapy.scheduler.core import RUNNER_STOPPED, Lease, RunnerStatus, Scheduler
from ollamapy.scheduler.policy import RunnerSpec
from ollamapy.scheduler.state import RunnerState

__all__ = ["RUNNER_STOPPED", "Lease", "RunnerSpec", "RunnerState", "RunnerStatus", "Scheduler"]
