"""A replay's results: the input rows with their outcomes, as `replay-results.csv` and as a printed table."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from optuna.trial import FrozenTrial

from polyp.io import write_text
from search.engine.record import TrialRecord, format_number, set_scores
from search.study.spreadsheet import Spreadsheet

RESULTS_FILE = "replay-results.csv"
RESULT_COLUMNS = ("trial", "state", "epochs_run", "best_val_mdice", "test_mdice", "test_miou", "minutes")


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


def set_columns(trials: dict[int, FrozenTrial]) -> list[str]:
    """The per-set columns of a replay whose trials scored several sets: "objective", "val_NAME_mdice", ...
    (none for a study that scores its in-domain validation split only, whose results keep their old columns)."""
    names = sorted({key for trial in trials.values() for key in set_scores(TrialRecord.of(trial).val)
                    if key.endswith("_mdice")})
    return ["objective", *(f"val_{key}" for key in names)] if names else []


def _set_cells(trial: FrozenTrial | None, columns: list[str]) -> dict[str, str]:
    val = TrialRecord.of(trial).val if trial is not None else {}
    return {column: format_number(val.get(column.removeprefix("val_"))) for column in columns}


def results_table(sheet: Spreadsheet, trials: dict[int, FrozenTrial]) -> list[dict[str, str]]:
    """The input rows in their order, each with its outcome columns (and per-set columns, `set_columns`)."""
    columns = set_columns(trials)
    return [{**row.cells, **result_cells(trials.get(row.number)), **_set_cells(trials.get(row.number), columns)}
            for row in sheet.rows]


def write_results(path: Path, sheet: Spreadsheet, trials: dict[int, FrozenTrial]) -> list[dict[str, str]]:
    """Writes the results table as CSV (atomically) and returns it."""
    table = results_table(sheet, trials)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[*sheet.columns, *RESULT_COLUMNS, *set_columns(trials)],
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(table)
    write_text(path, buffer.getvalue())
    return table


def summary(sheet: Spreadsheet, table: list[dict[str, str]], path: Path) -> str:
    """Counts by state and the results table, one line per row."""
    states = [cells["state"] for cells in table]
    counts = ", ".join(f"{states.count(s)} {s.lower()}" for s in dict.fromkeys(states))
    ranked = any("objective" in cells for cells in table)  # external validation sets: the value is the objective
    lines = [f"replay of {sheet.path} ({len(table)} rows): {counts}; results: {path}",
             f"{'row':>4}  {'trial':>5}  {'state':<8}  {'epochs':>6}  {'val mDice':>9}  "
             + (f"{'objective':>9}  " if ranked else "") + f"{'test mDice':>10}  {'test mIoU':>9}  {'minutes':>7}  notes"]
    for row, cells in zip(sheet.rows, table, strict=True):
        objective = f"{cells.get('objective', ''):>9}  " if ranked else ""
        lines.append(f"{row.number:>4}  {cells['trial']:>5}  {cells['state']:<8}  {cells['epochs_run']:>6}  "
                     f"{cells['best_val_mdice']:>9}  {objective}{cells['test_mdice']:>10}  {cells['test_miou']:>9}  "
                     f"{cells['minutes']:>7}  {row.notes}")
    return "\n".join(lines)
