"""A replayed spreadsheet's rows as trials: what each row trains, which trials replay it, and enqueueing them.

A row's values apply over the study's sampled config (an empty cell means the study's default, never a
sample); the row's values inside the study's space become Optuna's fixed params. A trial replays a row when
it carries the row's number and the same values (`search.engine.record`'s csv_* attributes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from search.engine.enqueue import PlannedTrial, enqueue_missing
from search.engine.record import TrialRecord, csv_row_attributes
from search.engine.session import Session
from search.engine.trial_loop import trial_line
from search.study.definition import Range, StudySpec
from search.study.spreadsheet import Spreadsheet, SpreadsheetRow

_PREFERENCE = {TrialState.COMPLETE: 3, TrialState.PRUNED: 3, TrialState.RUNNING: 2, TrialState.WAITING: 1}


def row_values(row: SpreadsheetRow, spec: StudySpec) -> dict[str, Any]:
    """What the trial applies over the sampled config: the row's values, and the study's own values for
    searched fields the row leaves empty (so an empty cell means the study's default, never a sample)."""
    return {**{name: getattr(row.config, name) for name in spec.space}, **row.values}


def _fits(entry: list[Any] | Range, value: Any) -> bool:
    if isinstance(entry, list):
        return any(type(value) is type(choice) and value == choice for choice in entry)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not entry.low <= value <= entry.high:
        return False
    return not entry.step or abs((value - entry.low) / entry.step - round((value - entry.low) / entry.step)) < 1e-9


def row_params(values: dict[str, Any], spec: StudySpec) -> dict[str, Any]:
    """The row's values for the study's searched fields that lie inside its space (Optuna's fixed params)."""
    return {name: values[name] for name, entry in spec.space.items() if _fits(entry, values[name])}


def outside_space(sheet: Spreadsheet, spec: StudySpec) -> list[str]:
    """"row N name=value" for each row value a searched field's space does not hold."""
    found = []
    for row in sheet.rows:
        values = row_values(row, spec)
        found += [f"row {row.number} {name}={values[name]}" for name in spec.space if not _fits(spec.space[name], values[name])]
    return found


def row_matcher(sheet: Spreadsheet, spec: StudySpec) -> Callable[[FrozenTrial], bool]:
    """Accepts the trials that replay one of the spreadsheet's rows (same row number and the same values)."""
    expected = {row.number: row_values(row, spec) for row in sheet.rows}

    def belongs(trial: FrozenTrial) -> bool:
        record = TrialRecord.of(trial)
        return record.csv_row in expected and record.csv_values == expected[record.csv_row]

    return belongs


def enqueue_rows(session: Session, sheet: Spreadsheet) -> list[int]:
    """Enqueues each row that has no finished, running or waiting trial yet; returns their numbers."""
    spec, belongs = session.spec, row_matcher(sheet, session.spec)
    plan = []
    for row in sheet.rows:
        values = row_values(row, spec)
        plan.append(PlannedTrial(row.number, row_params(values, spec),
                                 csv_row_attributes(row.number, values, row.notes, sheet.path.name)))
    return enqueue_missing(session.study, session.storage, plan,
                           key_of=lambda t: TrialRecord.of(t).csv_row if belongs(t) else None)


def row_trials(study: optuna.Study, sheet: Spreadsheet, spec: StudySpec) -> dict[int, FrozenTrial]:
    """Each row's trial: a finished one if any, else running, waiting, failed; the latest among equals."""
    belongs, chosen = row_matcher(sheet, spec), {}
    for trial in study.get_trials(deepcopy=False):
        if not belongs(trial):
            continue
        number = TrialRecord.of(trial).csv_row
        rank = (_PREFERENCE.get(trial.state, 0), trial.number)
        if number not in chosen or rank > (_PREFERENCE.get(chosen[number].state, 0), chosen[number].number):
            chosen[number] = trial
    return chosen


def print_row_trial(study: optuna.Study, trial: FrozenTrial) -> None:
    """Optuna callback: the trial's line, prefixed with its CSV row."""
    row = TrialRecord.of(trial).csv_row
    print(f"row {'-' if row is None else row}: {trial_line(study, trial)}", flush=True)
