"""Replay a spreadsheet: `python -m search.replay --csv hyperparameters.csv --study grid`.

Every row of the CSV is checked first (see `search.study.spreadsheet`); then each row becomes one enqueued trial
of the study, carrying its row number (`csv_row`), its values (`csv_values`) and notes (`csv_notes`) as user
attributes. Rows that already have a finished, running or waiting trial are not enqueued again, so the
same command resumes an interrupted replay, and several workers on one storage run every row once.
At the end `<run folder>/<study>/replay-results.csv` holds the input rows with their outcomes.

Example:
    python -m search.replay --csv hyperparameters.csv --study grid --data synthetic --epochs 2 --image-size 64
    python -m search.replay --csv hyperparameters.csv --study grid --storage postgresql://postgres@db-host/optuna
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from polyp.data import PolypData
from search.cli import (
    USER_ERRORS,
    add_study_options,
    add_training_options,
    add_worker_options,
    fail,
    run_trial_command,
    study_request,
)
from search.engine.notes import write_note
from search.engine.objective import Objective
from search.engine.replay_rows import enqueue_rows, outside_space, print_row_trial, row_matcher, row_trials
from search.engine.session import Session, load_data, open_session
from search.engine.trial_loop import run_until
from search.results.replay_table import RESULTS_FILE, summary, write_results
from search.study.spreadsheet import SEPARATORS, Spreadsheet, read_spreadsheet


@dataclass
class Replay:
    """search.replay's job: every row of the sheet once, as an enqueued trial."""

    session: Session
    data: PolypData
    sheet: Spreadsheet
    unit: str = "row"

    @property
    def results(self) -> Path:
        return self.session.folder / RESULTS_FILE

    def _write(self) -> list[dict[str, str]]:
        return write_results(self.results, self.sheet, row_trials(self.session.study, self.sheet, self.session.spec))

    def start(self, trainer: Callable, verbose: bool, timeout: float | None) -> str:
        session, spec = self.session, self.session.spec
        print(f"study {spec.name}: pruner {spec.run.pruner}, {self.data.describe(spec.base.image_size)}, "
              f"worker pid {os.getpid()}", flush=True)
        for note in self.data.notes():
            print(note, flush=True)
        objective = Objective(spec, self.data, session.run_dir, trainer=trainer, artifacts=session.artifacts,
                              verbose=verbose, after_trial=[write_note])
        enqueued = enqueue_rows(session, self.sheet)
        print(f"enqueued rows: {', '.join(map(str, enqueued)) or 'none'} "
              f"({len(self.sheet.rows) - len(enqueued)} already finished, running or waiting)", flush=True)
        return run_until(session.study, objective, len(self.sheet.rows), session.storage, timeout=timeout,
                         callbacks=[print_row_trial], waiting_only=True, trial_filter=row_matcher(self.sheet, spec),
                         sampler_for=session.sampler_for)

    def interrupted(self) -> str:
        self._write()
        return (f"interrupted: the running row is marked FAIL; run the same command again to run the rest "
                f"(results so far: {self.results}).")

    def after_workers(self, code: int) -> int:
        print(summary(self.sheet, self._write(), self.results))
        return code

    def finish(self, outcome: str) -> int:
        table = self._write()
        print(summary(self.sheet, table, self.results))
        failed = [row.number for row, cells in zip(self.sheet.rows, table, strict=True) if cells["state"] == "FAIL"]
        if failed:
            print(f"rows {', '.join(map(str, failed))} failed (reasons above and in the study); "
                  f"run the same command again to retry them.", file=sys.stderr)
            return 1
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Replay a CSV of hyperparameter combinations as trials of a study.")
    parser.add_argument("--csv", required=True, type=Path, help="one row per combination, one column per TrainConfig field")
    add_study_options(parser)
    add_training_options(parser)
    parser.add_argument("--check", action="store_true", help="only check the CSV against the study; enqueue nothing")
    add_worker_options(parser)
    args = parser.parse_args(argv)
    try:
        request = study_request(args, "search.replay")
        spec = request.spec()  # the study as this command runs it: built once, for the check and the session
        sheet = read_spreadsheet(args.csv, spec.base)
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

    def prepare() -> Replay:
        session = open_session(request, spec=spec)
        return Replay(session, load_data(session), sheet)  # decoded once, before any worker starts

    return run_trial_command("search.replay", args, argv, prepare)


if __name__ == "__main__":
    sys.exit(main())
