"""bench/stats.py: the verdicts of `make bench` come from bootstrap intervals, so a real gap
reads as met / NOT met and noise as "not resolved" (the rows it decides flipped run to run)."""

from __future__ import annotations

import random

from bench import stats


def _noisy(shift: float, spread: float, n: int, seed: int) -> list[tuple[float, float]]:
    rng = random.Random(seed)
    return [(shift + rng.gauss(0, spread), rng.gauss(0, spread)) for _ in range(n)]


def test_a_clear_gap_is_decided_both_ways() -> None:
    slower = _noisy(1.0, 0.3, 60, 1)  # ollamapy 1 ms above the router, little noise
    lo, hi = stats.bootstrap_ci(slower, stats.median_gap)
    assert 0.5 < lo < 1.0 < hi < 1.5
    assert stats.decide(lo, hi, 0.0, below=True) == "NOT met"
    faster = [(a - 2.0, b) for a, b in slower]
    lo, hi = stats.bootstrap_ci(faster, stats.median_gap)
    assert stats.decide(lo, hi, 0.0, below=True) == "met"


def test_noise_larger_than_the_gap_is_not_resolved() -> None:
    rounds = _noisy(0.5, 20.0, 12, 2)  # a 16-stream row: IQR ~20 ms, 12 rounds
    lo, hi = stats.bootstrap_ci(rounds, stats.median_gap)
    assert lo < 0.0 < hi
    assert stats.decide(lo, hi, 0.0, below=True) == "not resolved"


def test_at_least_a_ratio() -> None:
    ratios = [0.995, 1.004, 0.998, 1.010, 0.992, 1.001, 0.999, 1.003]
    lo, hi = stats.bootstrap_ci(ratios, stats.median_of)
    assert lo <= stats.median_of(ratios) <= hi
    assert stats.decide(lo, hi, 0.99, below=False) == "met"
    assert stats.decide(*stats.bootstrap_ci([0.95, 0.96, 0.97], stats.median_of), 0.99,
                        below=False) == "NOT met"
    assert stats.decide(*stats.bootstrap_ci([0.97, 1.0, 1.02], stats.median_of), 0.99,
                        below=False) == "not resolved"


def test_same_rounds_same_interval_and_no_rounds_decide_nothing() -> None:
    rounds = _noisy(0.2, 1.0, 30, 3)
    assert stats.bootstrap_ci(rounds, stats.median_gap) == stats.bootstrap_ci(
        rounds, stats.median_gap)
    lo, hi = stats.bootstrap_ci([], stats.median_of)
    assert stats.decide(lo, hi, 0.99, below=False) == "not resolved"
