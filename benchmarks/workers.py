"""Trials per hour with one worker of 2 threads against 2 workers of 1 thread each, on the same trials.

Samples ROWS fixed configurations from the demo study's space (seeded), writes them as a spreadsheet, and
replays it twice (the synthetic images decoded beforehand, so neither run pays for that) into fresh run folders with `search.replay --pruner none` (every row trains to the end):
once with `--workers 1 --threads 2`, once with `--workers 2` (1 thread each on a 2-core machine). Prints each
run's wall time and trials per hour, and the ratio.

    .venv/bin/python benchmarks/workers.py --rows 8
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

from polyp.data import prepare_data
from search.study.definition import load_study
from search.study.space import suggest

FIELDS = ("arch", "encoder", "encoder_depth", "lr", "loss")  # the demo study's searched fields


def write_rows(path: Path, rows: int, seed: int) -> None:
    """ROWS configurations of the demo space, sampled with RandomSampler(seed), as a spreadsheet."""
    spec = load_study("demo")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    configs = []
    for _ in range(rows):
        trial = study.ask()
        configs.append(suggest(trial, spec))
        study.tell(trial, 0.0)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(FIELDS)
        writer.writerows([getattr(cfg, name) for name in FIELDS] for cfg in configs)


def replay(sheet: Path, workers: list[str], epochs: int) -> float:
    """Seconds one replay of `sheet` takes with the given worker options."""
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "search.replay", "--csv", str(sheet), "--study", "demo",
                               "--data", "synthetic", "--pruner", "none", "--epochs", str(epochs), "--run-dir", out,
                               "--quiet", *workers], capture_output=True, text=True)
        seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"replay {' '.join(workers)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=8, help="trials in each run")
    parser.add_argument("--epochs", type=int, default=8, help="epochs per trial (the demo study's 8)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampled configurations")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        sheet = Path(folder) / "rows.csv"
        write_rows(sheet, args.rows, args.seed)
        spec = load_study("demo")
        prepare_data("synthetic", spec.base.image_size, synthetic_count=spec.run.synthetic_count)  # both runs: cached
        print(f"{args.rows} demo configurations (seed {args.seed}), 64 px, {args.epochs} epochs each, no pruning")
        results = {}
        for name, options in (("1 worker, 2 threads", ["--workers", "1", "--threads", "2"]),
                              ("2 workers, 1 thread each", ["--workers", "2", "--threads", "1"])):
            seconds = replay(sheet, options, args.epochs)
            results[name] = args.rows / seconds * 3600
            print(f"{name:<26} {seconds:7.1f} s  {results[name]:7.1f} trials/hour", flush=True)
    one, two = results.values()
    print(f"2 workers / 1 worker: {two / one:.2f}x the trials per hour")
    return 0


if __name__ == "__main__":
    sys.exit(main())
