"""Shared settings and bookkeeping for the property-based fuzzers (tests/unit/test_fuzz.py).

Normal suite: a bounded run (FUZZ_EXAMPLES, default 150 per target, a few seconds each).
`make fuzz` sets HYPOTHESIS_PROFILE=fuzz: 20,000 examples per target (OLLAMAPY_FUZZ_EXAMPLES
overrides both). Every example runs under a hang alarm; counts of inputs run, crashes (an exception
outside the target's documented error type) and hangs are written to OLLAMAPY_FUZZ_REPORT (JSON)
when that is set, and printed in the terminal summary.
"""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings

F = TypeVar("F", bound=Callable[..., Any])

LONG = os.environ.get("HYPOTHESIS_PROFILE") == "fuzz"
EXAMPLES = int(os.environ.get("OLLAMAPY_FUZZ_EXAMPLES", "20000" if LONG else "150"))
HANG_S = 10

RUNS: Counter[str] = Counter()
CRASHES: Counter[str] = Counter()
HANGS: Counter[str] = Counter()


def fuzz_settings(scale: float = 1.0) -> settings:
    return settings(max_examples=max(1, int(EXAMPLES * scale)), deadline=None, database=None,
                    suppress_health_check=list(HealthCheck), derandomize=not LONG)


class Hang(Exception):
    pass


@contextmanager
def example(target: str) -> Iterator[None]:
    """Count one input; a hang (HANG_S without returning) or a crash is recorded and re-raised
    so hypothesis shrinks it and the test fails."""
    def alarm(*_: object) -> None:
        raise Hang(f"{target}: no result within {HANG_S} s")

    RUNS[target] += 1
    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(HANG_S)
    try:
        yield
    except Hang:
        HANGS[target] += 1
        raise
    except BaseException:
        CRASHES[target] += 1
        raise
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def report() -> dict[str, Any]:
    return {t: {"inputs": RUNS[t], "crashes": CRASHES[t], "hangs": HANGS[t]}
            for t in sorted(RUNS)}


def write_report() -> None:
    path = os.environ.get("OLLAMAPY_FUZZ_REPORT")
    if path and RUNS:
        with open(path, "w") as f:
            json.dump(report(), f, indent=2)
