"""What the benchmark scripts that run the project's commands share: running one timed, reading a result."""

from __future__ import annotations

import csv
import subprocess
import time
from pathlib import Path


def step(name: str, command: list[str]) -> float:
    """Runs one command (its output shown), fails loudly, returns its minutes."""
    print(f"\n== {name}: {' '.join(command)}", flush=True)
    started = time.perf_counter()
    subprocess.run(command, check=True)
    minutes = (time.perf_counter() - started) / 60
    print(f"== {name}: {minutes:.1f} min", flush=True)
    return minutes


def evaluated_mdice(evaluation: Path) -> str:
    """The mDice of a `polyp.evaluate` folder's first data set (summary.csv), as written there."""
    with (evaluation / "summary.csv").open() as handle:
        return next(csv.DictReader(handle))["mDice"]
