"""Runs trials until a study holds N finished ones, across any number of workers, and reports progress."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

from search.storage import StudyLock

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
KEY_PARAMS = ("arch", "encoder", "encoder_depth", "lr", "batch_size", "loss", "optimizer")


def count_states(study: optuna.Study) -> dict[TrialState, int]:
    """How many trials of the study are in each state."""
    counts = dict.fromkeys(TrialState, 0)
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state] += 1
    return counts


def describe(trial: FrozenTrial) -> str:
    """A short "key=value" list of the trial's config."""
    config = trial.user_attrs.get("config") or trial.params
    parts = []
    for key in KEY_PARAMS:
        if key in config:
            value = config[key]
            parts.append(f"{key}={value:.2e}" if isinstance(value, float) else f"{key}={value}")
    return " ".join(parts)


def trial_line(study: optuna.Study, trial: FrozenTrial) -> str:
    """One line per finished trial: number, state, value, best so far, key params, time and overhead."""
    value = f"{trial.value:.4f}" if trial.value is not None else "-"
    if trial.state == TrialState.PRUNED and trial.intermediate_values:
        value = f"pruned at epoch {max(trial.intermediate_values)} ({trial.intermediate_values[max(trial.intermediate_values)]:.4f})"
    try:
        best = f"best {study.best_value:.4f} (trial {study.best_trial.number})"
    except ValueError:
        best = "best -"
    seconds = (trial.datetime_complete - trial.datetime_start).total_seconds() if trial.datetime_complete else 0.0
    overhead = trial.user_attrs.get("overhead_seconds")
    extra = f", overhead {overhead:.1f} s ({100 * overhead / max(seconds, 1e-9):.1f}%)" if overhead is not None else ""
    reason = f"  reason: {trial.user_attrs.get('fail_reason', '')}" if trial.state == TrialState.FAIL else ""
    retry = f" (retry of trial {trial.user_attrs['retry_of']})" if "retry_of" in trial.user_attrs else ""
    return (f"trial {trial.number}{retry} {trial.state.name} value {value} | {best} | {describe(trial)} | "
            f"{seconds:.1f} s{extra}{reason}")


def print_trial(study: optuna.Study, trial: FrozenTrial) -> None:
    """Optuna callback printing `trial_line`."""
    print(trial_line(study, trial), flush=True)


def run_until(study: optuna.Study, objective: Callable, target: int, storage, timeout: float | None = None,
              poll_s: float = 2.0, callbacks: list | None = None, waiting_only: bool = False) -> str:
    """Starts trials until the study holds `target` finished (complete or pruned) trials.

    The check "finished + running < target" and the trial's creation happen under one study-wide lock,
    so several workers together never overshoot. While the rest of the target is running elsewhere it
    waits, failing trials whose worker died (heartbeat) so that their retries run.

    Args:
        study: the study.
        objective: an Objective; its `on_start` is set to release the lock once the trial exists.
        target: finished trials the study must hold.
        storage: the RDB storage (for the lock).
        timeout: seconds after which no new trial starts.
        poll_s: seconds between checks while waiting for other workers.
        callbacks: Optuna callbacks run after each trial.
        waiting_only: only run enqueued (WAITING) trials, never sample new ones (CSV replay).

    Returns:
        "done" (target reached), "timeout", or "empty" (waiting_only and nothing left to run).
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    lock = StudyLock(storage, study.study_name)
    while True:
        if deadline is not None and time.monotonic() > deadline:
            return "timeout"
        lock.acquire()
        try:
            counts = count_states(study)
            finished = sum(counts[s] for s in FINISHED)
            busy = finished + counts[TrialState.RUNNING]
            if finished >= target:
                return "done"
            if waiting_only and counts[TrialState.WAITING] == 0 and counts[TrialState.RUNNING] == 0:
                return "empty"
            can_start = busy < target and (not waiting_only or counts[TrialState.WAITING] > 0)
            if can_start:
                objective.on_start = lock.release
                study.optimize(objective, n_trials=1, catch=(Exception,), callbacks=callbacks or [])
                continue
        finally:
            lock.release()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            optuna.storages.fail_stale_trials(study)
        time.sleep(poll_s)
