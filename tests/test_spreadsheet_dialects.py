"""Hyperparameter CSVs as spreadsheets in other locales save them: `;` or tab separators, decimal commas,
a byte-order mark, and the empty columns and rows a spreadsheet leaves at the end.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from polyp.config import TrainConfig
from search.study.spreadsheet import SpreadsheetError, detect_separator, read_spreadsheet

BASE = TrainConfig(arch="linknet", encoder="resnet18", encoder_depth=3, image_size=32, batch_size=4, epochs=1,
                   device="cpu")

POINT_CSV = """arch,encoder,encoder_depth,lr,weight_decay,loss,notes
linknet,resnet18,3,0.001,0.05,bce+0.5*dice,"first, with a comma"
unetplusplus,resnet18,4,3.5e-4,,dice,
linknet,mobilenet_v2,5,2e-3,0.1,,x
"""

COMMA_CSV = """arch;encoder;encoder_depth;lr;weight_decay;loss;notes
linknet;resnet18;3;0,001;0,05;bce+0,5*dice;first, with a comma
unetplusplus;resnet18;4;3,5e-4;;dice;
linknet;mobilenet_v2;5;2e-3;0,1;;x
"""


def write(tmp_path: Path, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / "hyperparameters.csv"
    path.write_bytes(text.encode(encoding))
    return path


def configs(path: Path) -> list[TrainConfig]:
    return [row.config for row in read_spreadsheet(path, BASE).rows]


def problems(path: Path) -> list[str]:
    with pytest.raises(SpreadsheetError) as caught:
        read_spreadsheet(path, BASE)
    return caught.value.problems


@pytest.fixture
def point_configs(tmp_path) -> list[TrainConfig]:
    """The configs of the `,`-separated file with decimal points: what every dialect should read to."""
    (tmp_path / "points").mkdir()
    found = configs(write(tmp_path / "points", POINT_CSV))
    assert [(c.lr, c.weight_decay, c.loss) for c in found] == [
        (0.001, 0.05, "bce+0.5*dice"), (3.5e-4, BASE.weight_decay, "dice"), (2e-3, 0.1, BASE.loss)]
    return found


def test_semicolon_file_with_decimal_commas_reads_like_the_comma_file(tmp_path, point_configs):
    grid = read_spreadsheet(write(tmp_path, COMMA_CSV), BASE)
    assert [row.config for row in grid.rows] == point_configs
    assert grid.separator == ";"
    assert grid.rows[0].notes == "first, with a comma"  # a comma in text is text
    assert grid.rows[0].cells["lr"] == "0,001"  # cells stay as written


def test_tab_separated_file_reads_like_the_comma_file(tmp_path, point_configs):
    grid = read_spreadsheet(write(tmp_path, COMMA_CSV.replace(";", "\t")), BASE)
    assert [row.config for row in grid.rows] == point_configs
    assert grid.separator == "\t"


def test_byte_order_mark_and_semicolons_read_like_the_comma_file(tmp_path, point_configs):
    assert configs(write(tmp_path, COMMA_CSV, encoding="utf-8-sig")) == point_configs


def test_trailing_empty_columns_and_rows_are_ignored(tmp_path, point_configs):
    lines = COMMA_CSV.splitlines()
    padded = [lines[0] + ";;", *(line + ";;" for line in lines[1:]), ";;;;;;;;;", ";;;;;;;;;", ""]
    grid = read_spreadsheet(write(tmp_path, "\r\n".join(padded)), BASE)
    assert [row.config for row in grid.rows] == point_configs
    assert grid.columns == lines[0].split(";")


def test_a_row_longer_than_the_header_only_by_empty_cells_is_fine(tmp_path):
    grid = read_spreadsheet(write(tmp_path, "arch;lr\nlinknet;0,002;;;\n"), BASE)
    assert grid.rows[0].config.lr == 0.002


@pytest.mark.parametrize(("text", "problem"), [
    ("arch;encoder;lr\nlinknet;resnet18;abc\n", "row 1 (line 2), column 3 (lr): expected float, got 'abc'"),
    ("arch;lr\nlinknet;1e-3\nlinknet;1,2,3\n", "row 2 (line 3), column 2 (lr): expected float, got '1,2,3'"),
    ("arch;;lr\nlinknet;;1e-3\n", "line 1, column 2 (empty): the header cell is empty"),
    ("arch;lr;\nlinknet;1e-3;x\n", "line 1, column 3 (empty): the header cell is empty"),
    ("arch;lr\nlinknet;1e-3;x\n", "row 1 (line 2): 3 cells but the header has 2 columns (a semicolon inside"),
    ("arch;encoder_depth\nlinknet;3,5\n", "row 1 (line 2), column 2 (encoder_depth): expected int, got '3,5'"),
])
def test_bad_cell_in_a_semicolon_file_names_its_row_and_column(tmp_path, text, problem):
    found = problems(write(tmp_path, text))
    assert len(found) == 1 and problem in found[0], found


def test_decimal_comma_in_a_comma_separated_file_is_still_an_error(tmp_path):
    found = problems(write(tmp_path, 'arch,lr\nlinknet,"0,001"\n'))
    assert len(found) == 1
    assert "row 1 (line 2), column 2 (lr): expected float, got '0,001'" in found[0]
    assert "comma-separated" in found[0]


@pytest.mark.parametrize(("text", "separator"), [
    ("arch,encoder;lr\n", ","),  # a tie
    ("arch\n", ","),  # one column: no separator
    ('"a;b",c,d\n', ","),  # separators inside quotes do not count
    ("\n\narch;lr\n", ";"),  # the first non-blank line
    ("arch\tlr\tnotes\n", "\t"),
])
def test_separator_is_the_most_frequent_in_the_header(text, separator):
    assert detect_separator(text) == separator


def test_excel_separator_line_and_leading_blank_lines_are_read(tmp_path: Path):
    path = tmp_path / "excel.csv"
    path.write_text("sep=;\n\narch;lr\nlinknet;0,001\n")
    sheet = read_spreadsheet(path, BASE)
    assert sheet.separator == ";" and sheet.columns == ["arch", "lr"]
    assert sheet.rows[0].config.lr == 0.001 and sheet.rows[0].line == 4, "lines keep their numbers"


def test_a_repeated_row_is_named_without_an_empty_column(tmp_path: Path):
    path = tmp_path / "twice.csv"
    path.write_text("arch,,lr\nlinknet,,0.001\nlinknet,,0.001\n")
    with pytest.raises(SpreadsheetError) as caught:
        read_spreadsheet(path, BASE)
    assert "row 2 (line 3): the same configuration as row 1" in str(caught.value)
    assert "column 2 ()" not in str(caught.value)
