"""Runs trials until a study holds N finished ones, across any number of workers, and reports progress."""

from __future__ import annotations

import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

from search.engine.record import TrialRecord, format_number, trial_value
from search.engine.storage import StudyLock

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
TAKEN = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)  # a replay or refit
# enqueues a row or run again only when it has no trial in these states (a failed one goes again)


def top_trials(study: optuna.Study, k: int) -> list[FrozenTrial]:
    """The `k` complete trials with the highest value, best first."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return sorted(complete, key=trial_value, reverse=True)[:k]


def count_states(study: optuna.Study, trial_filter: Callable[[FrozenTrial], bool] | None = None
                 ) -> dict[TrialState, int]:
    """How many trials of the study (only those `trial_filter` accepts, if given) are in each state."""
    counts = dict.fromkeys(TrialState, 0)
    for trial in study.get_trials(deepcopy=False):
        if trial_filter is None or trial_filter(trial):
            counts[trial.state] += 1
    return counts


def trial_line(study: optuna.Study, trial: FrozenTrial) -> str:
    """One line per finished trial: number, state, value, best so far, key params, time and overhead."""
    record = TrialRecord.of(trial)
    value = format_number(record.value, missing="-")
    if record.status == "over_budget" and record.state in FINISHED:
        value = f"{value} (budget: {record.reason})" if record.state == TrialState.COMPLETE else f"pruned by the budget: {record.reason}"
    elif record.state == TrialState.PRUNED and record.intermediate:
        last = max(record.intermediate)
        value = f"pruned at epoch {last} ({record.intermediate[last]:.4f})"
    elif record.state == TrialState.PRUNED and record.status == "too_slow":
        value = f"pruned before training: {record.reason}"
    top = top_trials(study, 1)
    best = f"best {trial_value(top[0]):.4f} (trial {top[0].number})" if top else "best -"
    seconds, overhead = record.seconds or 0.0, record.overhead_seconds
    extra = f", overhead {overhead:.1f} s ({100 * overhead / max(seconds, 1e-9):.1f}%)" if overhead is not None else ""
    reason = f"  reason: {record.fail_reason}" if record.state == TrialState.FAIL else ""
    retry = f" (retry of trial {record.retry_of})" if record.retry_of is not None else ""
    return (f"trial {record.number}{retry} {record.state.name} value {value} | {best} | {record.describe()} | "
            f"{seconds:.1f} s{extra}{reason}")


def interrupt_on_signals() -> None:
    """Makes SIGINT and SIGTERM raise KeyboardInterrupt, so `kill` and a Ctrl-C reach a background worker too
    (a shell starts background jobs with SIGINT ignored) and the running trial is marked before exiting."""

    def interrupt(signum, _frame):
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread only
        signal.signal(signal.SIGINT, interrupt)
        signal.signal(signal.SIGTERM, interrupt)


def print_trial(study: optuna.Study, trial: FrozenTrial) -> None:
    """Optuna callback printing `trial_line`."""
    print(trial_line(study, trial), flush=True)


def _optimize_one(study: optuna.Study, objective: Callable, callbacks: list, on_start: Callable[[], None]) -> None:
    """Runs one trial, calling `on_start` once it exists; one that another worker marked failed meanwhile (late
    heartbeat) is given up. A Ctrl-C or SIGTERM during the trial always ends here as KeyboardInterrupt, whatever
    Optuna raises while it records the trial (it refuses to tell a trial the heartbeat already failed)."""
    started: list[int] = []
    interrupted: list[KeyboardInterrupt] = []

    def tracked(trial: optuna.trial.Trial) -> float:
        on_start()
        started.append(trial.number)
        try:
            return objective(trial)
        except KeyboardInterrupt as interrupt:
            interrupted.append(interrupt)
            raise

    try:
        study.optimize(tracked, n_trials=1, catch=(Exception,), callbacks=callbacks)
    except Exception:  # Optuna cannot tell a trial that is already FAIL (ValueError, or AssertionError)
        if interrupted:
            raise interrupted[0] from None
        taken = [t for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
                 if t.number in started and not TrialRecord.of(t).fail_reason]  # not a failure of its own
        if not taken:
            raise
        print(f"trial {taken[0].number}: another worker marked it failed because its heartbeat was late "
              f"(more than 2x --heartbeat seconds; an overloaded machine?); its retry runs instead.",
              file=sys.stderr, flush=True)
    if interrupted:  # Optuna's own handling ended quietly (e.g. a KeyboardInterrupt swallowed by a callback)
        raise interrupted[0]


def run_until(study: optuna.Study, objective: Callable, target: int, storage, timeout: float | None = None,
              poll_s: float = 2.0, callbacks: list | None = None, waiting_only: bool = False,
              trial_filter: Callable[[FrozenTrial], bool] | None = None,
              sampler_for: Callable[[int], optuna.samplers.BaseSampler] | None = None,
              stop_when: Callable[[], bool] | None = None) -> str:
    """Starts trials until the study holds `target` finished (complete or pruned) trials.

    The check "finished + running < target" and the trial's creation happen under one study-wide lock,
    so several workers together never overshoot. While the rest of the target is running elsewhere it
    waits, failing trials whose worker died (heartbeat) so that their retries run.

    Args:
        study: the study.
        objective: the objective (a callable taking the trial); the lock is released once the trial exists.
        target: finished trials the study must hold.
        storage: the RDB storage (for the lock).
        timeout: seconds after which no new trial starts.
        poll_s: seconds between checks while waiting for other workers.
        callbacks: Optuna callbacks run after each trial.
        waiting_only: only run enqueued (WAITING) trials, never sample new ones (CSV replay).
        trial_filter: count only the trials it accepts (a replay counts its own CSV's rows); None = all.
        sampler_for: the sampler for the trial about to get number n (seeded with n), so that workers
            started with the same seed do not sample the same configs; None keeps the study's sampler.
        stop_when: checked before each trial: True starts no new one (outcome "timeout"; search.auto's stage budget).

    Returns:
        "done" (target reached), "timeout", or "empty" (waiting_only and nothing left to run).
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    lock = StudyLock(storage, study.study_name)
    while True:
        if (deadline is not None and time.monotonic() > deadline) or (stop_when is not None and stop_when()):
            return "timeout"
        lock.acquire()
        try:
            counts = count_states(study, trial_filter)
            finished = sum(counts[s] for s in FINISHED)
            busy = finished + counts[TrialState.RUNNING]
            if finished >= target:
                return "done"
            if waiting_only and counts[TrialState.WAITING] == 0 and counts[TrialState.RUNNING] == 0:
                return "empty"
            can_start = busy < target and (not waiting_only or counts[TrialState.WAITING] > 0)
            if can_start:
                if sampler_for is not None:
                    study.sampler = sampler_for(len(study.get_trials(deepcopy=False)))
                _optimize_one(study, objective, callbacks or [], on_start=lock.release)
                continue
            # Under the lock, so that two waiting workers never fail (and so retry) the same dead trial twice.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                optuna.storages.fail_stale_trials(study)
        finally:
            lock.release()
        time.sleep(poll_s)
