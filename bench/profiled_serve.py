"""`ollamapy serve` with a switchable profiler, for `python -m bench profile`: SIGUSR1 starts
cProfile, SIGUSR2 stops it and writes the stats to $BENCH_PROFILE_OUT (the server's startup
and warm-up stay out of the profile)."""

from __future__ import annotations

import cProfile
import os
import signal
import time
from types import FrameType

from ollamapy.config import load_settings
from ollamapy.server.serve import run

# CPU time, not wall time: on a loaded machine preemption would land on whatever ran.
PROFILER = cProfile.Profile(time.process_time)


def _start(_sig: int, _frame: FrameType | None) -> None:
    PROFILER.enable()


def _stop(_sig: int, _frame: FrameType | None) -> None:
    PROFILER.disable()
    PROFILER.dump_stats(os.environ["BENCH_PROFILE_OUT"])


def main() -> None:
    signal.signal(signal.SIGUSR1, _start)
    signal.signal(signal.SIGUSR2, _stop)
    run(load_settings())


if __name__ == "__main__":
    main()
