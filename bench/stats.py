"""Whether a benchmark difference is real: percentile-bootstrap intervals over paired rounds.

A median of 12 rounds whose spread (IQR) is 20 ms cannot tell +3 ms from -3 ms, so a bare
"median below the router's" verdict flips with the noise from run to run. Here each verdict is
read from a 95 % interval over the rounds instead: "met" or "NOT met" only when the interval
is wholly on one side of the target, "not resolved" (with the interval) otherwise.

Rounds are resampled whole: all paths of round i ran next to each other, so the pairing that
cancels load drift (bench/__main__.py) survives the resampling.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")

LEVEL = 0.95
RESAMPLES = 4000
SEED = 12  # fixed: the same rounds always give the same interval


def bootstrap_ci(rounds: Sequence[T], stat: Callable[[Sequence[T]], float], *,
                 level: float = LEVEL, resamples: int = RESAMPLES,
                 seed: int = SEED) -> tuple[float, float]:
    """The `level` percentile-bootstrap interval of `stat` over `rounds` (resampled with
    replacement, whole rounds)."""
    if not rounds:
        return float("nan"), float("nan")
    rng = random.Random(seed)
    n = len(rounds)
    values = sorted(stat([rounds[rng.randrange(n)] for _ in range(n)])
                    for _ in range(resamples))
    tail = (1 - level) / 2
    lo = values[int(tail * (resamples - 1))]
    hi = values[int((1 - tail) * (resamples - 1) + 0.5)]
    return lo, hi


def median_gap(rounds: Sequence[tuple[float, float]]) -> float:
    """median(a) - median(b) over (a, b) pairs: e.g. ollamapy's overhead minus the router's."""
    return statistics.median(a for a, _ in rounds) - statistics.median(b for _, b in rounds)


def median_of(rounds: Sequence[float]) -> float:
    return statistics.median(rounds)


def decide(lo: float, hi: float, target: float, *, below: bool) -> str:
    """'met', 'NOT met' or 'not resolved' for "the statistic is below `target`" (`below`) or
    "at least `target`" (not `below`), given its interval [lo, hi]."""
    if lo != lo or hi != hi:  # NaN: no rounds
        return "not resolved"
    if below:
        return "met" if hi < target else "NOT met" if lo >= target else "not resolved"
    return "met" if lo >= target else "NOT met" if hi < target else "not resolved"
