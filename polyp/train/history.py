"""The per-epoch history of a training run as a CSV file (`history.csv` of `polyp.train` and of every trial)."""

from __future__ import annotations

import csv
from pathlib import Path

from polyp.io import atomic_path


def write_history(path: Path, history: list[dict]) -> None:
    """Writes the per-epoch history as CSV (one row per epoch, the columns of the first), atomically."""
    with atomic_path(path) as temporary, open(temporary, "w", newline="") as handle:
        if history:
            writer = csv.DictWriter(handle, fieldnames=list(history[0]))
            writer.writeheader()
            writer.writerows(history)
