"""Enqueueing the trials a command plans (a spreadsheet's rows, a refit's runs) exactly once.

Each planned trial has a key (a row number; a refit's source trial, seed and fold). A plan is enqueued under
the study lock, after failing the trials of dead workers (so their retries, WAITING, count as taken): several
workers starting the same command together enqueue every key once, and a rerun enqueues only what is left.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from search.engine.storage import StudyLock
from search.engine.trial_loop import TAKEN


@dataclass(frozen=True)
class PlannedTrial:
    """One trial a command wants: its key, the params Optuna fixes and the user attributes it starts with."""

    key: Hashable
    params: dict[str, Any]
    user_attrs: dict[str, Any]


def enqueue_missing(study: optuna.Study, storage, plan: Iterable[PlannedTrial],
                    key_of: Callable[[FrozenTrial], Hashable | None]) -> list[Hashable]:
    """Enqueues each planned trial whose key no finished, running or waiting trial has yet; returns their keys.

    Args:
        study: the study.
        storage: its RDB storage (for the lock).
        plan: the planned trials, in the order they should run.
        key_of: a stored trial's key (None: not one of this plan's trials).
    """
    with StudyLock(storage, study.study_name):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            optuna.storages.fail_stale_trials(study)  # a dead worker's trial gets its retry (WAITING) first
        taken = {key_of(t) for t in study.get_trials(deepcopy=False, states=TAKEN)} - {None}
        enqueued = []
        for planned in plan:
            if planned.key in taken:
                continue
            study.enqueue_trial(planned.params, user_attrs=planned.user_attrs)
            enqueued.append(planned.key)
    return enqueued
