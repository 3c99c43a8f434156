"""Search efficiency: the hand-made grid (every CSV row trained to the end) against a study's sampler with
pruning, on the same data and the same budget of training epochs (`search.bench` prints the comparison).

The grid's cost is its whole budget: a person running a spreadsheet only knows its best row once every row
has run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path

import optuna

from polyp.data import PolypData
from search.engine.objective import Objective
from search.engine.record import TrialRecord
from search.study.definition import StudySpec
from search.study.forced import apply_forced
from search.study.samplers import build_pruner, build_sampler
from search.study.spreadsheet import read_spreadsheet

Curve = list[tuple[int, float]]  # (epochs spent so far, best validation mDice so far) after each trial


def run_grid(spec: StudySpec, csv_path: str, data, trainer, rows: int | None) -> Curve:
    """Trains every CSV row to the end (no pruning); returns the best-so-far curve."""
    curve, spent, best = [], 0, 0.0
    for row in read_spreadsheet(csv_path, spec.base).rows[:rows]:
        cfg = apply_forced(row.config, spec)
        result = trainer(cfg, data, None, evaluate_test=False)
        spent += len(result.history)
        best = max(best, result.objective if result.best_val else 0.0)
        curve.append((spent, best))
        print(f"  grid row {row.number:>2}: {cfg.arch}/{cfg.encoder} d{cfg.encoder_depth} lr {cfg.lr:.1e} "
              f"{cfg.loss:<14} {'objective' if data.external else 'val mDice'} "
              f"{result.objective if result.best_val else 0.0:.4f}  epochs {spent:>4}  best {best:.4f}",
              flush=True)
    return curve


def load_or_run_grid(path: str | None, key: dict, run) -> tuple[Curve, float]:
    """The grid's curve and minutes from the JSON file `path` when it was written for the same `key`
    (CSV, data, size, epochs, rows), else from `run()`, then saved there."""
    if path and Path(path).is_file():
        saved = json.loads(Path(path).read_text())
        if saved.get("key") == key:
            for spent, best in saved["curve"]:
                print(f"  grid (from {path}): epochs {spent:>4}  best {best:.4f}")
            return [tuple(point) for point in saved["curve"]], saved["minutes"]
        print(f"  {path} holds another grid ({saved.get('key')}); running it again")
    started = time.perf_counter()
    curve = run()
    minutes = (time.perf_counter() - started) / 60
    if path:
        Path(path).write_text(json.dumps({"key": key, "curve": curve, "minutes": minutes}, indent=1))
    return curve, minutes


def run_study(spec: StudySpec, data, trainer, budget: int, run_dir: Path, stop_at: float | None = None,
              sampler_seed: int | None = None) -> Curve:
    """Runs the study's sampler and pruner until `budget` epochs are spent (or its best reaches `stop_at`).
    Budgets count epochs, so the trials are not timed and no latency limit holds (a model pruned before it
    trains would spend nothing, and the loop would not end)."""
    spec = dataclasses.replace(spec, run=dataclasses.replace(spec.run, latency="none", max_latency_ms=0.0,
                                                                  objectives=("mdice",)))
    seed = spec.run.seed if sampler_seed is None else sampler_seed
    study = optuna.create_study(direction="maximize", sampler=build_sampler(spec.run.sampler, spec, seed),
                                pruner=build_pruner(spec.run.pruner, spec))
    objective = Objective(spec, data, run_dir, trainer=trainer, verbose=False)
    curve, spent = [], 0
    while spent < budget:
        study.optimize(objective, n_trials=1, catch=(Exception,))
        trial = study.trials[-1]
        record = TrialRecord.of(trial)
        spent += record.epochs_run or 0
        best = max((t.value for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE), default=0.0)
        curve.append((spent, best))
        value = "-" if trial.value is None else f"{trial.value:.4f}"
        print(f"  study trial {trial.number:>2}: {trial.state.name:<8} value {value}  "
              f"epochs run {record.epochs_run or 0}  spent {spent:>4}  best {best:.4f}  "
              f"{record.describe(tuple(record.params))}", flush=True)
        if stop_at is not None and best >= stop_at - 1e-9:
            break
    return curve


def split_digest(data: PolypData) -> str:
    """A short digest of which images train and validate, so a saved grid is reused only on the same split."""
    names = "\n".join(["train", *data.split.train, "val", *data.split.val])
    return hashlib.sha256(names.encode()).hexdigest()[:16]


def epochs_to_reach(curve: Curve, target: float) -> int | None:
    """The epochs spent when the curve first reached `target`, or None."""
    return next((spent for spent, best in curve if best >= target - 1e-9), None)
