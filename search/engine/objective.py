"""The Optuna objective: sample a config, train it with pruning, leave its outputs, return its best validation
objective (the validation mDice unless external validation sets are scored; polyp.selection)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from polyp.config import TrainConfig, parse_config
from polyp.data import PolypData
from polyp.latency import Latency, config_latency
from polyp.train import PrintReporter, Reporters, TrainResult, fit
from search.engine.artifacts import open_artifact_store
from search.engine.outputs import trial_dir, upload_files, write_trial_files
from search.engine.record import (
    TrialRecord,
    csv_values,
    record_config,
    record_failure,
    record_latency,
    record_latency_constraint,
    record_outputs,
    record_over_budget,
    record_overhead,
    record_reported,
    record_result,
    record_start,
    record_too_slow,
    refit_values,
)
from search.engine.storage import first_heartbeat, retried_trial_number
from search.study.definition import StudySpec
from search.study.forced import apply_forced
from search.study.space import suggest

Trainer = Callable[..., TrainResult]  # fit(config, data, reporter) -> TrainResult


class TrialFailed(RuntimeError):
    """A trial that ran but produced nothing usable (diverged, no epoch finished)."""


class OptunaReporter:
    """Reports each epoch's objective (validation mDice unless external sets are scored) to the trial and asks the
    pruner whether to stop."""

    def __init__(self, trial: optuna.trial.Trial, epochs: int):
        self.trial, self.epochs = trial, epochs
        self.pruned_at: int | None = None
        self.reported: dict[int, float] = {}

    def on_epoch_end(self, epoch: int, metrics: dict[str, Any]) -> bool:
        value = metrics.get("objective", metrics["val_mdice"])
        if len(self.trial.study.directions) > 1:  # Optuna reports and prunes single-objective studies only:
            self.reported[epoch] = value  # kept as a user attribute, for the report's curves while it runs
            record_reported(self.trial, self.reported)
            return False
        self.trial.report(value, step=epoch)
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
        run_dir: the run folder (trial folders go under it).
        trainer: the training function (tests pass a fake one).
        after_trial: hooks called with (trial, facts) once a trial's outputs exist (e.g. dashboard notes).
        verbose: print a line per epoch.
        artifacts: the artifact store of the trials' files (search.engine.artifacts); None: `<run_dir>/artifacts`.
        data_for: the data a trial trains on, when it is not `data` (a refit run's cross-validation fold).
    """

    spec: StudySpec
    data: PolypData
    run_dir: Path
    trainer: Trainer = fit
    after_trial: list[Callable[[optuna.trial.Trial, dict], None]] = field(default_factory=list)
    artifacts: object = None  # the artifact store (search.engine.artifacts); None: the run folder's
    verbose: bool = True
    data_for: Callable[[optuna.trial.Trial], PolypData] | None = None
    budget: Any = None  # search.auto's stage budget (search.planning.clock.StageBudget): stops a trial at the epoch
    # after which another would overrun its stage's share; None: no budget
    _warned: bool = field(default=False, init=False, repr=False)  # the unreachable latency limit was said

    def config_for(self, trial: optuna.trial.Trial) -> TrainConfig:
        """The trial's config: sampled, then a replayed CSV row's (or a refit run's) values, then the command
        line's forced settings."""
        cfg = suggest(trial, self.spec)
        row = csv_values(trial) or refit_values(trial)
        if row:
            cfg = parse_config(row, base=cfg)
        return apply_forced(cfg, self.spec)

    def latency(self, cfg: TrainConfig) -> dict:
        """The config's model timed per frame as the study's `[run].latency` asks ({} for "none"); before it
        trains, since the weights do not change the time."""
        mode = self.spec.run.latency
        return {} if mode == "none" else config_latency(cfg, onnx=mode == "onnx").to_dict()

    def stop_if_too_slow(self, trial: optuna.trial.Trial, latency: Latency) -> None:
        """With `[run].max_latency_ms`: records how far the model's faster runtime is over it as Optuna's constraint,
        prunes the trial before it trains when it is over, and says so once when none of the first trials'
        models met the limit."""
        limit = self.spec.run.max_latency_ms
        if not limit:
            return
        record_latency_constraint(trial, latency.fastest_ms - limit)
        if latency.fastest_ms <= limit:
            return
        reason = f"{latency.fastest_ms:.1f} ms per frame is over max_latency_ms {limit:g}: not trained"
        record_too_slow(trial, reason)
        timed = [record for t in trial.study.get_trials(deepcopy=False)
                 if (record := TrialRecord.of(t)).fastest_ms is not None]
        if len(timed) >= max(3, self.spec.run.startup_trials) and not self._warned and all(
                record.fastest_ms > limit for record in timed):
            fastest = min(timed, key=lambda record: record.fastest_ms)
            print(f"note: none of the {len(timed)} models timed so far runs within max_latency_ms {limit:g} (the "
                  f"fastest: {fastest.fastest_ms:.1f} ms, trial {fastest.number}, {fastest.describe()}); the limit "
                  "may be out of this space's reach: raise it, or search smaller image sizes or lighter models",
                  file=sys.stderr, flush=True)
            self._warned = True
        raise optuna.TrialPruned(reason)

    def __call__(self, trial: optuna.trial.Trial) -> float | tuple[float, float]:
        started = time.perf_counter()
        try:
            return self._run(trial, started)
        except optuna.TrialPruned:
            raise
        except KeyboardInterrupt:
            record_failure(trial, "interrupted (Ctrl-C or SIGTERM); the next run goes on")
            raise
        except Exception as error:
            record_failure(trial, f"{type(error).__name__}: {error}")
            raise

    def _run(self, trial: optuna.trial.Trial, started: float) -> float | tuple[float, float]:
        frozen = next((t for t in trial.study.get_trials(deepcopy=False) if t.number == trial.number), None)
        record_start(trial, retried_trial_number(frozen) if frozen is not None else None)
        first_heartbeat(trial)
        cfg = self.config_for(trial)
        record_config(trial, cfg)
        clock = self.budget.start(trial, cfg) if self.budget is not None else None  # prunes one that cannot fit
        latency = self.latency(cfg)
        if latency:
            record_latency(trial, latency)
            if self.verbose:
                print(f"  trial {trial.number} latency: {Latency(**latency).describe()}", flush=True)
            self.stop_if_too_slow(trial, Latency(**latency))
        reporter = OptunaReporter(trial, cfg.epochs)
        printer = PrintReporter(f"  trial {trial.number} ", cfg.epochs) if self.verbose else None
        data = self.data_for(trial) if self.data_for is not None else self.data
        result = self.trainer(cfg, data, Reporters([printer, reporter, clock]))
        trained = time.perf_counter()
        facts = {**record_result(trial, result), **({"latency": latency} if latency else {})}
        over_budget = bool(clock is not None and clock.reason and reporter.pruned_at is None and result.status == "stopped")
        if over_budget:
            record_over_budget(trial, clock.reason)
        kept = over_budget and self.budget.keeps_stopped  # a refit run keeps its best epoch so far
        folder = trial_dir(self.run_dir, self.spec.name, trial.number)
        sample = self.data.test.subset(self.data.test.stems[: self.spec.run.sample_images])
        files = write_trial_files(folder, cfg, result, sample, f"{self.spec.name} trial {trial.number}",
                                  keep_checkpoint=result.status in ("completed", "early_stopped") or kept,
                                  facts={"metrics": {"val": result.best_val, "test": result.test},
                                         **({"latency": latency} if latency else {}),
                                         "study": self.spec.name, "trial": trial.number})
        record_outputs(trial, upload_files(self.artifacts or open_artifact_store(self.run_dir), trial, files), str(folder))
        for hook in self.after_trial:
            hook(trial, facts)
        overhead = time.perf_counter() - trained
        record_overhead(trial, overhead, overhead / max(1e-9, time.perf_counter() - started))
        if result.status == "diverged":
            raise TrialFailed(result.reason)
        if not result.best_epoch:
            raise TrialFailed("no epoch finished")
        if over_budget and not kept:
            raise optuna.TrialPruned(clock.reason)
        if result.status == "stopped" and not kept:
            last = result.history[-1]
            score = (f"val mDice {last['val_mdice']:.4f}" if last.get("objective", last["val_mdice"]) == last["val_mdice"]
                     else f"objective {last['objective']:.4f}, val mDice {last['val_mdice']:.4f}")
            raise optuna.TrialPruned(f"pruned at epoch {reporter.pruned_at} ({score})")
        if len(trial.study.directions) > 1:  # [run].objectives = ["mdice", "latency_ms"]
            return result.objective, Latency(**latency).fastest_ms
        return result.objective
