"""The Optuna objective: sample a config, train it with pruning, leave its outputs, return best val mDice."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from polyp.config import TrainConfig, parse_config
from polyp.data import PolypData
from polyp.train import PrintReporter, Reporters, TrainResult, fit
from search.outputs import artifact_store, trial_dir, upload_files, write_trial_files
from search.space import suggest
from search.storage import retried_trial_number
from search.studies import StudySpec

Trainer = Callable[..., TrainResult]  # fit(config, data, reporter) -> TrainResult


class TrialFailed(RuntimeError):
    """A trial that ran but produced nothing usable (diverged, no epoch finished)."""


class OptunaReporter:
    """Reports each epoch's validation mDice to the trial and asks the pruner whether to stop."""

    def __init__(self, trial: optuna.trial.Trial, epochs: int):
        self.trial, self.epochs = trial, epochs
        self.pruned_at: int | None = None

    def on_epoch_end(self, epoch: int, metrics: dict[str, Any]) -> bool:
        self.trial.report(metrics["val_mdice"], step=epoch)
        if epoch < self.epochs and self.trial.should_prune():  # after the last epoch there is nothing to save
            self.pruned_at = epoch
            return True
        return False


@dataclass
class Objective:
    """Callable objective for `study.optimize`.

    Args:
        spec: the study definition.
        data: decoded data, shared by every trial.
        run_dir: the run folder (trial folders and the artifact store go under it).
        overrides: TrainConfig values from the command line that beat the sampled ones (e.g. epochs).
        trainer: the training function (tests pass a fake one).
        on_start: called first thing in every trial (releases the study lock taken around `ask`).
        after_trial: hooks called with (trial, facts) once a trial's outputs exist (e.g. dashboard notes).
        verbose: print a line per epoch.
    """

    spec: StudySpec
    data: PolypData
    run_dir: Path
    overrides: dict[str, Any] = field(default_factory=dict)
    trainer: Trainer = fit
    on_start: Callable[[], None] | None = None
    after_trial: list[Callable[[optuna.trial.Trial, dict], None]] = field(default_factory=list)
    verbose: bool = True

    def config_for(self, trial: optuna.trial.Trial) -> TrainConfig:
        """The trial's config: sampled, then a replayed CSV row's values, then the command line's."""
        cfg = suggest(trial, self.spec)
        row = trial.user_attrs.get("csv_values")
        if row:
            cfg = parse_config(row, base=cfg)
        return parse_config(self.overrides, base=cfg) if self.overrides else cfg

    def __call__(self, trial: optuna.trial.Trial) -> float:
        if self.on_start is not None:
            self.on_start()
        started = time.perf_counter()
        try:
            return self._run(trial, started)
        except optuna.TrialPruned:
            raise
        except KeyboardInterrupt:
            trial.set_user_attr("fail_reason", "interrupted (Ctrl-C or SIGTERM); the next run goes on")
            raise
        except Exception as error:
            trial.set_user_attr("fail_reason", f"{type(error).__name__}: {error}"[:2000])
            raise

    def _run(self, trial: optuna.trial.Trial, started: float) -> float:
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")  # which worker ran it ("host:pid")
        frozen = next((t for t in trial.study.get_trials(deepcopy=False) if t.number == trial.number), None)
        repeats = retried_trial_number(frozen) if frozen is not None else None
        if repeats is not None:
            trial.set_user_attr("retry_of", repeats)
        cfg = self.config_for(trial)
        trial.set_user_attr("config", cfg.to_dict())
        reporter = OptunaReporter(trial, cfg.epochs)
        printer = PrintReporter(f"  trial {trial.number} ", cfg.epochs) if self.verbose else None
        result = self.trainer(cfg, self.data, Reporters([printer, reporter]))
        trained = time.perf_counter()
        facts = self._record(trial, cfg, result)
        folder = trial_dir(self.run_dir, self.spec.name, trial.number)
        sample = self.data.test.subset(self.data.test.stems[: self.spec.run.sample_images])
        files = write_trial_files(folder, cfg, result, sample, f"{self.spec.name} trial {trial.number}",
                                  keep_checkpoint=result.status in ("completed", "early_stopped"),
                                  facts={"metrics": {"val": result.best_val, "test": result.test},
                                         "study": self.spec.name, "trial": trial.number})
        trial.set_user_attr("artifacts", upload_files(artifact_store(self.run_dir), trial, files))
        trial.set_user_attr("output_dir", str(folder))
        for hook in self.after_trial:
            hook(trial, facts)
        overhead = time.perf_counter() - trained
        trial.set_user_attr("overhead_seconds", overhead)
        trial.set_user_attr("overhead_fraction", overhead / max(1e-9, time.perf_counter() - started))
        if result.status == "diverged":
            raise TrialFailed(result.reason)
        if not result.best_epoch:
            raise TrialFailed("no epoch finished")
        if result.status == "stopped":
            raise optuna.TrialPruned(f"pruned at epoch {reporter.pruned_at} (val mDice {result.history[-1]['val_mdice']:.4f})")
        return float(result.best_val["mdice"])

    def _record(self, trial: optuna.trial.Trial, cfg: TrainConfig, result: TrainResult) -> dict:
        facts = {
            "status": result.status,
            "reason": result.reason,
            "epochs_run": len(result.history),
            "best_epoch": result.best_epoch,
            "val": result.best_val,
            "test": result.test,
            "parameters": result.parameters,
            "images_per_second": result.images_per_second,
            "train_seconds": result.seconds,
        }
        for key, value in facts.items():
            trial.set_user_attr(key, value)
        trial.set_user_attr("history", result.history)
        return facts
