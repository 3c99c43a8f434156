"""Holding search.auto's budget: each stage's clock (its deadline, the seconds it spent, kept on the run's state),
the budget a stage gives each trial (no trial starts that cannot train one epoch in time; a running one stops
after the epoch past which another would overrun), and the progress line after each trial.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from polyp.config import TrainConfig
from search.engine.record import TrialRecord, record_over_budget, trial_value
from search.planning.budget import format_duration, minutes
from search.planning.state import RunState

TAIL_SHARE, TAIL_S = 0.3, 3.0  # after the last epoch: scoring the test split, writing files (share of an epoch + s)


class StageClock:
    """One stage's time: what it spent before this run (a resume), its deadline, and saving what it spends."""

    def __init__(self, state: RunState, name: str, share: float, budget: float, log: Path | None = None):
        self.state, self.name, self.budget, self.log = state, name, budget, log
        self.before = state.spent().get(name, 0.0)
        self.others = state.total_spent() - self.before
        self.started = time.time()
        self.deadline = self.started + max(0.0, share - self.before)
        self.share = share
        self.exhausted = False  # not even the fastest model's first epoch fits in what is left

    def over(self) -> bool:
        """Whether the stage should start no new trial."""
        return self.exhausted or self.left() <= 0

    def __enter__(self) -> StageClock:
        return self

    def __exit__(self, *exc) -> None:
        self.save()  # also after a Ctrl-C or an error: the time spent is kept

    def elapsed(self) -> float:
        """Seconds this stage has spent, over every run."""
        return self.before + time.time() - self.started

    def left(self) -> float:
        return self.deadline - time.time()

    def save(self) -> None:
        self.state.set_spent(self.name, self.elapsed())

    def progress(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        """Optuna callback: saves the time spent and prints one progress line (also to the log file)."""
        self.save()
        total = self.others + self.elapsed()
        best = max((v for t in study.get_trials(deepcopy=False) if (v := trial_value(t)) is not None), default=None)
        record = TrialRecord.of(trial)
        value = "-" if record.value is None else f"{record.value:.4f}"
        line = (f"auto {self.name}: trial {trial.number} {trial.state.name} {value}, best {'-' if best is None else f'{best:.4f}'}"
                f" | stage {minutes(self.elapsed())} of {minutes(self.share)} | run {minutes(total)} of "
                f"{minutes(self.budget)}, {format_duration(max(0.0, self.budget - total))} left "
                f"(ends by {time.strftime('%H:%M', time.localtime(time.time() + max(0.0, self.budget - total)))})")
        print(line, flush=True)
        write_log(self.log, line)


class WorkerClock(StageClock):
    """A stage's clock in one of its `--workers` processes: the command's deadline. It saves the stage's time after
    each trial as the command's own clock would (the same figure in every worker), so a command killed outright
    keeps it too."""

    def __init__(self, state: RunState, name: str, share: float, budget: float, deadline: float,
                 log: Path | None = None):
        super().__init__(state, name, share, budget, log)
        self.deadline = deadline

    def elapsed(self) -> float:
        return max(0.0, self.share - self.left())


def write_log(log: Path | None, line: str) -> None:
    """Appends a line to the run's progress log (a plain file: readable with tail -f)."""
    if log is not None:
        with log.open("a") as handle:
            handle.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")


@dataclass
class StageBudget:
    """What a stage's trials may spend (Objective.budget).

    Args:
        clock: the stage's clock.
        first_epoch: predicted seconds of a config's first epoch (search.planning.plan.Costs).
        keeps_stopped: a run stopped by the budget keeps its best epoch and completes (the refit), instead of
            being pruned (the search stages).
    """

    clock: StageClock
    first_epoch: Callable[[TrainConfig], float]
    keeps_stopped: bool = False
    fastest_epoch: float = 0.0  # the fastest candidate's first epoch at the stage's size: when even it does not
    # fit, the stage ends

    def start(self, trial: optuna.trial.Trial, cfg: TrainConfig) -> DeadlineReporter:
        """The trial's deadline reporter; prunes it before training when not even one epoch fits (and ends the
        stage when the fastest model would not fit either)."""
        need = self.first_epoch(cfg) * (1 + TAIL_SHARE) + TAIL_S
        left = self.clock.left()
        if need > left:
            if self.fastest_epoch * (1 + TAIL_SHARE) + TAIL_S > left:
                self.clock.exhausted = True
            reason = (f"not trained: its first epoch needs about {need:.0f} s and stage {self.clock.name} has "
                      f"{max(0.0, left):.0f} s of its share left")
            record_over_budget(trial, reason)
            raise optuna.TrialPruned(reason)
        return DeadlineReporter(self.clock, cfg.epochs)


@dataclass
class DeadlineReporter:
    """Stops training after the epoch past which another epoch (and the trial's tail) would overrun the stage."""

    clock: StageClock
    epochs: int
    reason: str = ""
    seen: list[float] = field(default_factory=list)

    def on_epoch_end(self, epoch: int, metrics: dict[str, Any]) -> bool:
        self.seen.append(float(metrics.get("seconds", 0.0)))
        if epoch >= self.epochs:
            return False
        epoch_seconds = max(self.seen)
        if time.time() + epoch_seconds * (1 + TAIL_SHARE) + TAIL_S > self.clock.deadline:
            self.reason = (f"stopped after epoch {epoch} of {self.epochs}: another epoch ({epoch_seconds:.0f} s) would "
                           f"pass stage {self.clock.name}'s share ({minutes(self.clock.share)})")
            return True
        return False
