"""The median time of repeated calls after untimed warm-up ones: how the project times inference."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

WARMUP = 3  # untimed runs first: allocation, oneDNN's kernel choice, CUDA's lazy start
REPEATS = 15  # timed runs; the median counts


def median_ms(run: Callable[[], object], warmup: int = WARMUP, repeats: int = REPEATS) -> float:
    """The median milliseconds of `repeats` timed calls of `run`, after `warmup` untimed ones."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000
