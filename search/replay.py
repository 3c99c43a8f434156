"""Replay a spreadsheet: `python -m search.replay --csv hyperparameters.csv --study grid`.

Every row of the CSV is checked first (see `search.spreadsheet`); then each row becomes one enqueued trial of
the study, carrying its row number (`csv_row`), its values (`csv_values`) and notes (`csv_notes`) as user
attributes. Rows that already have a finished, running or waiting trial are not enqueued again, so the
same command resumes an interrupted replay, and several workers on one storage run every row once.
At the end `<run folder>/<study>/replay-results.csv` holds the input rows with their outcomes.

Example:
    python -m search.replay --csv hyperparameters.csv --study grid --data synthetic --epochs 2 --image-size 64
    python -m search.replay --csv hyperparameters.csv --study grid --storage postgresql://postgres@db-host/optuna
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from polyp.io import write_text
from search.forced import with_command_line
from search.notes import write_note
from search.objective import Objective
from search.options import USER_ERRORS, add_study_options, add_training_options, fail, import_trainer
from search.record import TrialRecord, csv_row_attributes, format_number
from search.session import Session, load_data, open_session
from search.spreadsheet import SEPARATORS, Spreadsheet, SpreadsheetRow, read_spreadsheet
from search.storage import StudyLock
from search.studies import Range, StudySpec, load_study
from search.trial_loop import TAKEN, interrupt_on_signals, run_until, trial_line
from search.workers import add_worker_options, plan_workers, run_workers

RESULTS_FILE = "replay-results.csv"
RESULT_COLUMNS = ("trial", "state", "epochs_run", "best_val_mdice", "test_mdice", "test_miou", "minutes")
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
    """Enqueues each row that has no finished, running or waiting trial yet; returns their numbers.

    Runs under the study lock, so workers replaying the same CSV together enqueue every row once.
    """
    study, spec, belongs = session.study, session.spec, row_matcher(sheet, session.spec)
    with StudyLock(session.storage, study.study_name):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            optuna.storages.fail_stale_trials(study)  # a dead worker's row gets its retry (WAITING) first
        taken = {TrialRecord.of(t).csv_row for t in study.get_trials(deepcopy=False, states=TAKEN) if belongs(t)}
        enqueued = []
        for row in sheet.rows:
            if row.number in taken:
                continue
            values = row_values(row, spec)
            study.enqueue_trial(row_params(values, spec),
                                user_attrs=csv_row_attributes(row.number, values, row.notes, sheet.path.name))
            enqueued.append(row.number)
    return enqueued


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


def result_cells(trial: FrozenTrial | None) -> dict[str, str]:
    """A row's outcome: trial, state, epochs run, best val mDice, test mDice and IoU, minutes taken."""
    if trial is None:
        return {**dict.fromkeys(RESULT_COLUMNS, ""), "state": "NOT_RUN"}
    record = TrialRecord.of(trial)
    minutes = None if record.seconds is None else record.seconds / 60
    epochs = record.epochs_run
    return {"trial": str(record.number), "state": record.state.name, "epochs_run": "" if epochs is None else str(epochs),
            "best_val_mdice": format_number(record.val.get("mdice")), "test_mdice": format_number(record.test.get("mdice")),
            "test_miou": format_number(record.test.get("miou")), "minutes": format_number(minutes, 2)}


def results_table(sheet: Spreadsheet, trials: dict[int, FrozenTrial]) -> list[dict[str, str]]:
    """The input rows in their order, each with its outcome columns."""
    return [{**row.cells, **result_cells(trials.get(row.number))} for row in sheet.rows]


def write_results(path: Path, sheet: Spreadsheet, trials: dict[int, FrozenTrial]) -> list[dict[str, str]]:
    """Writes the results table as CSV (atomically) and returns it."""
    table = results_table(sheet, trials)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[*sheet.columns, *RESULT_COLUMNS], lineterminator="\n")
    writer.writeheader()
    writer.writerows(table)
    write_text(path, buffer.getvalue())
    return table


def print_row_trial(study: optuna.Study, trial: FrozenTrial) -> None:
    """Optuna callback: the trial's line, prefixed with its CSV row."""
    row = TrialRecord.of(trial).csv_row
    print(f"row {'-' if row is None else row}: {trial_line(study, trial)}", flush=True)


def summary(sheet: Spreadsheet, table: list[dict[str, str]], path: Path) -> str:
    """Counts by state and the results table, one line per row."""
    states = [cells["state"] for cells in table]
    counts = ", ".join(f"{states.count(s)} {s.lower()}" for s in dict.fromkeys(states))
    lines = [f"replay of {sheet.path} ({len(table)} rows): {counts}; results: {path}",
             f"{'row':>4}  {'trial':>5}  {'state':<8}  {'epochs':>6}  {'val mDice':>9}  {'test mDice':>10}  "
             f"{'test mIoU':>9}  {'minutes':>7}  notes"]
    for row, cells in zip(sheet.rows, table, strict=True):
        lines.append(f"{row.number:>4}  {cells['trial']:>5}  {cells['state']:<8}  {cells['epochs_run']:>6}  "
                     f"{cells['best_val_mdice']:>9}  {cells['test_mdice']:>10}  {cells['test_miou']:>9}  "
                     f"{cells['minutes']:>7}  {row.notes}")
    return "\n".join(lines)


def check_spreadsheet(args: argparse.Namespace) -> tuple[Spreadsheet, StudySpec]:
    """Loads the study (with the command line's overrides) and checks the CSV against it."""
    spec = with_command_line(load_study(args.study), args)
    return read_spreadsheet(args.csv, spec.base), spec


def run_replay(session: Session, sheet: Spreadsheet, objective: Objective, timeout: float | None) -> str:
    """Enqueues the rows still to run and runs enqueued trials until every row of the sheet has finished."""
    enqueued = enqueue_rows(session, sheet)
    print(f"enqueued rows: {', '.join(map(str, enqueued)) or 'none'} "
          f"({len(sheet.rows) - len(enqueued)} already finished, running or waiting)", flush=True)
    return run_until(session.study, objective, len(sheet.rows), session.storage, timeout=timeout,
                     callbacks=[print_row_trial], waiting_only=True, trial_filter=row_matcher(sheet, session.spec),
                     sampler_for=session.sampler_for)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Replay a CSV of hyperparameter combinations as trials of a study.")
    parser.add_argument("--csv", required=True, type=Path, help="one row per combination, one column per TrainConfig field")
    add_study_options(parser)
    add_training_options(parser)
    parser.add_argument("--check", action="store_true", help="only check the CSV against the study; enqueue nothing")
    add_worker_options(parser)
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    interrupt_on_signals()
    try:
        sheet, spec = check_spreadsheet(args)
    except USER_ERRORS as error:
        return fail(str(error))
    epochs = "--epochs for every row" if args.epochs else "unless a row says otherwise"
    separated = f" ({SEPARATORS[sheet.separator]}-separated)" if sheet.separator != "," else ""
    print(f"{sheet.path}{separated}: {len(sheet.rows)} rows checked against study {spec.name} "
          f"({spec.base.image_size} px, {spec.base.epochs} epochs {epochs})", flush=True)
    for note in outside_space(sheet, spec)[:20]:
        print(f"note: {note} lies outside the study's search space: trained as written, not an Optuna param")
    if args.check:
        return 0
    try:
        trainer = import_trainer(args.trainer)
        session = open_session(args)
        data = load_data(session)  # decoded and split once, before any worker starts (they read the cache)
        plan = plan_workers(args, sys.argv[1:] if argv is None else argv, session.spec.base) if args.workers != 1 else None
    except USER_ERRORS as error:
        return fail(str(error))
    if plan is not None:
        code = run_workers("search.replay", plan)
        results = session.folder / RESULTS_FILE
        print(summary(sheet, write_results(results, sheet, row_trials(session.study, sheet, session.spec)), results))
        return code
    print(f"study {spec.name}: pruner {session.spec.run.pruner}, {data.describe(spec.base.image_size)}, "
          f"worker pid {os.getpid()}", flush=True)
    for note in data.notes():
        print(note, flush=True)
    objective = Objective(session.spec, data, session.run_dir, trainer=trainer, artifacts=session.artifacts,
                          verbose=not args.quiet, after_trial=[write_note])
    results = session.folder / RESULTS_FILE
    try:
        outcome = run_replay(session, sheet, objective, args.timeout)
    except KeyboardInterrupt:
        write_results(results, sheet, row_trials(session.study, sheet, session.spec))
        print(f"\ninterrupted: the running row is marked FAIL; run the same command again to run the rest "
              f"(results so far: {results}).", file=sys.stderr)
        return 130
    table = write_results(results, sheet, row_trials(session.study, sheet, session.spec))
    if outcome == "timeout":
        print(f"--timeout {args.timeout:.0f} s reached: no new row started; run the same command again to go on.")
    print(summary(sheet, table, results))
    failed = [row.number for row, cells in zip(sheet.rows, table, strict=True) if cells["state"] == "FAIL"]
    if failed:
        print(f"rows {', '.join(map(str, failed))} failed (reasons above and in the study); "
              f"run the same command again to retry them.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
