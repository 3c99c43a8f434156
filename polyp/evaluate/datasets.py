"""The test sets `polyp.evaluate` scores: `--data NAME=FOLDER`, a folder of several data sets, a test list.

A FOLDER with images and masks (any layout of `polyp.data.folder.LAYOUTS`: `images/`+`masks/`,
`image/`+`mask/`, CVC-ClinicDB's `Original/`+`Ground Truth/`) is one data set; a FOLDER without them whose
subfolders have them (PraNet's `TestDataset/`) is one data set per subfolder, named after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from polyp.data import DataError, Pair
from polyp.data.folder import LAYOUTS, find_layout, scan_pairs
from polyp.data.loading import check_one_convention
from polyp.data.masks import MaskConvention, detect, read_raw_mask
from polyp.data.splits import read_test_list


@dataclass(frozen=True)
class EvalSet:
    """One data set to score: its name, folder, image/mask pairs and mask convention."""

    name: str
    root: Path
    pairs: list[Pair]
    convention: MaskConvention
    skipped: list[str]  # files operating systems leave behind


def named_folders(values: list[str]) -> list[tuple[str, Path]]:
    """(name, folder) of each `--data` value (`NAME=FOLDER` or `FOLDER`), folders of data sets expanded.

    Raises:
        DataError: a folder that does not exist or holds no data set, or two data sets of one name.
    """
    found: list[tuple[str, Path]] = []
    for value in values:
        name, _, folder_text = value.rpartition("=") if "=" in value else ("", "", value)
        folder = Path(folder_text).expanduser()
        if not folder.is_dir():
            raise DataError(f"--data {value}: {folder} is not a folder")
        if find_layout(folder):
            found.append((name or folder.name, folder))
            continue
        inner = sorted(sub for sub in folder.iterdir() if sub.is_dir() and find_layout(sub))
        if not inner:
            layouts = ", ".join(f"{images}/ + {masks}/" for images, masks in LAYOUTS)
            raise DataError(f"--data {value}: {folder} holds no data set (expected {layouts}, or subfolders with them)")
        found += [(f"{name}/{sub.name}" if name else sub.name, sub) for sub in inner]
    names = [name for name, _ in found]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise DataError(f"--data: data set name(s) {', '.join(repeated)} given twice; name them with NAME=FOLDER")
    return found


def eval_set(name: str, folder: Path, test_list: Path | None = None, stems: list[str] | None = None) -> EvalSet:
    """The checked pairs of one data set (only the stems of `test_list` or `stems`) and its mask convention."""
    scan = scan_pairs(folder)
    if scan.problems:
        raise DataError(f"{folder}: {len(scan.problems)} problem(s):\n  " + "\n  ".join(scan.problems))
    pairs = scan.pairs
    if test_list is not None or stems is not None:
        listed = read_test_list(test_list) if test_list is not None else stems
        by_stem = {pair.stem: pair for pair in pairs}
        missing = [stem for stem in listed if stem not in by_stem]
        if missing:
            raise DataError(f"{test_list or 'the split'}: {len(missing)} listed stem(s) not in {folder}: "
                            f"{', '.join(missing[:5])}")
        pairs = [by_stem[stem] for stem in listed]
    largest = [int(read_raw_mask(pair.mask).max()) for pair in pairs]
    check_one_convention(folder, [pair.mask.name for pair in pairs], largest)
    return EvalSet(name, folder, pairs, detect(largest), scan.skipped)
