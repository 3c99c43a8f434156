"""A spreadsheet of hyperparameter combinations (`hyperparameters.csv`) read and checked as trials to replay.

One row per combination, one column per TrainConfig field the row sets, plus an optional `notes` column.
An empty cell takes the study's value. Every row is checked before anything is trained: unknown columns,
values of the wrong type or out of range, models that cannot be built, an image size other than the
study's (images are decoded once at one size) and rows that repeat an earlier row's configuration. All
problems are collected and raised together, each with its place:

    hyperparameters.csv row 7 (line 8), column 5 (lr): expected float, got 'abc'

Rows are numbered as data rows (1 = the first row under the header); "line" is the line of the file,
which is the row number a spreadsheet shows.

Dialects: UTF-8 text, with or without a byte-order mark (Excel's "CSV UTF-8"). The separator is the one of
`,` `;` and tab that the header line holds most often outside quotes (`,` when none or a tie), so files
saved by spreadsheets in locales that write `;` are read as they are. In a `;`- or tab-separated file a
decimal comma means a decimal point in a float field (`0,001`, `3,5e-4`) and in a loss weight
(`bce+0,5*dice`); in a `,`-separated file a comma is never a decimal point. Blank rows, empty header cells
at the end of the header with nothing under them (`arch;encoder;;;`) and empty cells past the header's
end are ignored.

Example:
    >>> from search.study.spreadsheet import read_spreadsheet
    >>> from search.study.definition import load_study
    >>> sheet = read_spreadsheet("hyperparameters.csv", load_study("grid").base)  # doctest: +SKIP
    >>> sheet.rows[0].config.arch  # doctest: +SKIP
    'unetplusplus'
"""

from __future__ import annotations

import csv
import difflib
import io
import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polyp.config import FIELDS, ConfigError, TrainConfig, field_type, parse_config
from polyp.errors import PolypError
from polyp.models import check_buildable

NOTES = "notes"
_ALIASES = {"learning_rate": "lr", "lr_max": "lr", "bs": "batch_size", "architecture": "arch", "model": "arch",
            "backbone": "encoder", "depth": "encoder_depth", "attention": "decoder_attention", "note": NOTES,
            "comment": NOTES, "comments": NOTES}  # spreadsheet names for our fields, for a "did you mean"
SEPARATORS = {",": "comma", ";": "semicolon", "\t": "tab"}  # the separators read, by name
_DECIMAL_COMMA = re.compile(r"(?<=\d),(?=\d)")  # a comma between digits, as in "bce+0,5*dice"


class SpreadsheetError(PolypError):
    """A hyperparameter CSV with problems; `problems` lists each one with its row and column."""

    def __init__(self, path: str | Path, problems: list[str]):
        self.problems = problems
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        super().__init__(f"{path}: {count}; nothing was enqueued (rows count from the first row under the header; "
                         f"'line' is the file's line, as a spreadsheet numbers it):\n  " + "\n  ".join(problems))


@dataclass(frozen=True)
class SpreadsheetRow:
    """One checked row of the CSV."""

    number: int  # 1-based data row (header not counted, blank lines skipped)
    line: int  # line of the file where the row ends (a spreadsheet's row number)
    cells: dict[str, str]  # every column's text as written, in header order
    values: dict[str, Any]  # the TrainConfig fields the row sets, coerced to their types
    notes: str  # the notes cell ("" without one)
    config: TrainConfig  # the row's values over the study's config


@dataclass(frozen=True)
class Spreadsheet:
    """A checked hyperparameter CSV: its columns in order and its rows."""

    path: Path
    columns: list[str]
    rows: list[SpreadsheetRow]
    separator: str = ","  # the separator detected from the header line: "," ";" or "\t"


def detect_separator(text: str) -> str:
    """The separator of a CSV's text: the one of `,` `;` and tab its first non-blank line holds most often.

    Only characters outside double quotes count; header names never contain a separator.

    Args:
        text: the file's text.

    Returns:
        ",", ";" or a tab; "," when the line holds none of them or two equally often (a one-column file).
    """
    header = next((line for line in text.splitlines() if line.strip()), "")
    counts, quoted = dict.fromkeys(SEPARATORS, 0), False
    for char in header:
        if char == '"':
            quoted = not quoted
        elif char in counts and not quoted:
            counts[char] += 1
    most = max(counts.values())
    leaders = [separator for separator, count in counts.items() if count == most]
    return leaders[0] if most and len(leaders) == 1 else ","


def _unused_trailing_columns(columns: list[str], records: list[tuple[int, list[str]]]) -> int:
    """How many empty header cells at the header's end have nothing under them (a spreadsheet's `a;b;;;`)."""
    count = 0
    for index in range(len(columns) - 1, 0, -1):  # the first column stays, to be reported if empty
        if columns[index] or any(index < len(record) and record[index].strip() for _, record in records):
            break
        count += 1
    return count


def _header_problems(path: Path, columns: list[str]) -> list[str]:
    problems = []
    for index, name in enumerate(columns, start=1):
        where = f"{path} line 1, column {index} ({name or 'empty'})"
        if not name:
            problems.append(f"{where}: the header cell is empty; name a TrainConfig field or {NOTES}")
        elif columns.index(name) != index - 1:
            problems.append(f"{where}: repeats column {columns.index(name) + 1}; each field may appear once")
        elif name != NOTES and name not in FIELDS:
            close = [_ALIASES[name.lower()]] if name.lower() in _ALIASES else \
                difflib.get_close_matches(name, [*FIELDS, NOTES], n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            problems.append(f"{where}: unknown column; {hint}columns are TrainConfig fields "
                            f"({', '.join(FIELDS)}) or {NOTES}")
    return problems


def _message(error: ConfigError) -> tuple[str, str]:
    """Splits "field: what went wrong" into its field and its text."""
    field, _, text = str(error).partition(": ")
    return (field, text) if field in FIELDS else ("", str(error))


class _RowChecker:
    """Checks one data row against the study's config, collecting every problem it finds."""

    def __init__(self, path: Path, columns: list[str], base: TrainConfig, separator: str):
        self.path, self.columns, self.base, self.separator = path, columns, base, separator

    def where(self, number: int, line: int, field: str = "") -> str:
        place = f"{self.path} row {number} (line {line})"
        if field and field in self.columns:
            return f"{place}, column {self.columns.index(field) + 1} ({field})"
        return f"{place}, {field} (the study's {getattr(self.base, field)!r})" if field else place

    def decimal_points(self, name: str, text: str) -> str:
        """The cell with its decimal commas as points, where the separator is not a comma."""
        if self.separator == ",":
            return text
        if field_type(FIELDS[name]) is float and text.count(",") == 1 and "." not in text:
            return text.replace(",", ".")
        return _DECIMAL_COMMA.sub(".", text) if name == "loss" else text

    def check(self, number: int, line: int, cells: dict[str, str], problems: list[str]) -> SpreadsheetRow | None:
        found = len(problems)
        values: dict[str, Any] = {}
        for name, text in cells.items():
            if name not in FIELDS or not text:
                continue  # notes, empty cells, and unknown columns (reported with the header)
            try:
                values[name] = getattr(parse_config({name: self.decimal_points(name, text)}, base=self.base), name)
            except ConfigError as error:
                hint = ""
                if self.separator == "," and "," in text and field_type(FIELDS[name]) is float:
                    hint = " (the file is comma-separated, so a comma is not a decimal point: write a point)"
                problems.append(f"{self.where(number, line, name)}: {_message(error)[1]}{hint}")
        if "image_size" in values and values["image_size"] != self.base.image_size:
            problems.append(f"{self.where(number, line, 'image_size')}: {values['image_size']} is not the study's "
                            f"image size {self.base.image_size} (images are decoded once at one size); leave the "
                            f"cell empty, or replay rows of another size separately with --image-size")
        if len(problems) > found:
            return None
        try:
            config = parse_config(values, base=self.base)
            check_buildable(config)
        except ConfigError as error:
            field, text = _message(error)
            problems.append(f"{self.where(number, line, field)}: {text}")
            return None
        return SpreadsheetRow(number, line, cells, values, cells.get(NOTES, ""), config)


def read_spreadsheet(path: str | Path, base: TrainConfig) -> Spreadsheet:
    """Reads and checks a hyperparameter CSV against the study's config.

    Args:
        path: the CSV file (UTF-8, a header row, then one combination per row; separated by `,` `;` or
            tab, see the module's docstring).
        base: the study's config; empty cells take its values.

    Returns:
        The checked spreadsheet, with the separator it was read with.

    Raises:
        SpreadsheetError: every problem in the file, each naming its row and column, or a file that cannot be read.
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            text = handle.read()
        text, separator = _excel_separator_line(text)
        separator = separator or detect_separator(text)
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=separator)
        records = [(reader.line_num, record) for record in reader]
    except UnicodeDecodeError as error:
        raise SpreadsheetError(path, [f"{path}: not UTF-8 text ({error.reason}); save it as "
                               f"'CSV UTF-8' from the spreadsheet"]) from None
    except csv.Error as error:
        raise SpreadsheetError(path, [f"{path}: not a readable CSV file: {error}"]) from None
    except OSError as error:
        raise SpreadsheetError(path, [f"{path}: cannot be read ({error.strerror or error})"]) from None
    columns, rows, problems = _check_records(path, records, separator, base)
    if problems:
        raise SpreadsheetError(path, problems)
    return Spreadsheet(path, columns, rows, separator)


def _excel_separator_line(text: str) -> tuple[str, str | None]:
    """Excel's optional first line `sep=;` names the separator: the text without it (blank, so lines keep
    their numbers) and that separator, or the text as it is and None."""
    first, newline, rest = text.partition("\n")
    match = re.fullmatch(r"\s*sep=(.)\s*", first)
    return (newline + rest, match.group(1)) if match else (text, None)


def _check_records(path: Path, records: list[tuple[int, list[str]]], separator: str,
                   base: TrainConfig) -> tuple[list[str], list[SpreadsheetRow], list[str]]:
    """The header, the good rows and every problem found, from the file's (line, cells) records."""
    records = list(itertools.dropwhile(lambda record: not any(cell.strip() for cell in record[1]), records))
    if not records:
        return [], [], [f"{path}: the file is empty; it needs a header row of TrainConfig fields"]
    (_, header), data = records[0], records[1:]
    columns = [name.strip() for name in header]
    columns = columns[:len(columns) - _unused_trailing_columns(columns, data)]
    problems = _header_problems(path, columns)
    checker = _RowChecker(path, columns, base, separator)
    rows: list[SpreadsheetRow] = []
    seen: dict[TrainConfig, SpreadsheetRow] = {}
    number = 0
    for line, record in data:
        if not any(cell.strip() for cell in record):
            continue  # blank lines are not rows
        number += 1
        if any(cell.strip() for cell in record[len(columns):]):  # empty cells past the header's end are fine
            used = max(index for index, cell in enumerate(record) if cell.strip()) + 1
            problems.append(f"{checker.where(number, line)}: {used} cells but the header has {len(columns)} "
                            f"columns (a {SEPARATORS[separator]} inside a value needs quotes)")
            continue
        cells = {name: (record[i].strip() if i < len(record) else "") for i, name in enumerate(columns)}
        row = checker.check(number, line, cells, problems)
        if row is None:
            continue
        if row.config in seen:
            first = seen[row.config]
            problems.append(f"{checker.where(number, line)}: the same configuration as row "
                            f"{first.number} (line {first.line}); remove one of them or change a value")
            continue
        seen[row.config] = row
        rows.append(row)
    if number == 0:
        problems.append(f"{path}: no rows under the header")
    return columns, rows, problems
