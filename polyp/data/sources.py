"""Named data sets: `NAME=FOLDER` training and validation sets, their test lists and groups files.

A run may train on several data sets (`--data kvasir=FOLDER --data cvc=FOLDER`) and score every epoch on
sets it never trains on (`--val-data cvc=FOLDER`). Each set has a name that the history's columns, the
objective and `split.json` use. A groups file (`--groups cvc=sequences.csv`: stem → group, such as the video
a frame comes from) keeps every group on one side of each split.

Example:
    >>> sources = training_sources(["kvasir=/data/kvasir-seg"], ["kvasir=/data/test.txt"], [])
    >>> sources[0].name, sources[0].test_list
    ('kvasir', '/data/test.txt')
"""

from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from polyp.data.folder import DataError, scan_pairs

NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,39}$")
RESERVED_NAMES = ("mean", "worst", "val")  # objective words that cannot name a set
SHOWN = 5  # files or stems named in an error; the rest are counted


@dataclass(frozen=True)
class DataSource:
    """One named data set: a folder with images and masks (or "synthetic"), its test list and groups file."""

    name: str
    folder: str
    test_list: str = ""  # file of test stems; empty = a seeded fraction
    groups: str = ""  # CSV of stem,group; empty = every image is its own group


def split_name(value: str) -> tuple[str | None, str]:
    """'NAME=VALUE' as (NAME, VALUE); a value that starts with no name (a plain path) as (None, VALUE)."""
    head, sep, tail = value.partition("=")
    if sep and NAME_PATTERN.match(head):
        return head, tail
    return None, value


def default_name(folder: str) -> str:
    """The name a set given without one gets: its folder's name, made a valid name ("kvasir-seg")."""
    base = re.sub(r"[^A-Za-z0-9_-]", "_", Path(folder.rstrip("/")).name or "data")
    return base if base[:1].isalpha() else f"set_{base}"[:40]


def _named(values: list[str], flag: str) -> list[tuple[str, str]]:
    named: list[tuple[str, str]] = []
    for value in values:
        name, rest = split_name(value)
        if not rest:
            raise DataError(f"{flag} {value!r}: nothing after '='; write {flag} NAME=PATH")
        name = name or default_name(rest)
        if name in RESERVED_NAMES:
            raise DataError(f"{flag} {value!r}: {name!r} cannot name a data set (it is an objective word: "
                            f"{', '.join(RESERVED_NAMES)}); choose another name")
        if any(name == seen for seen, _ in named):
            raise DataError(f"{flag}: the set name {name!r} is given twice; give each set its own NAME=")
        named.append((name, rest))
    return named


def _attach(values: list[str], flag: str, names: list[str]) -> dict[str, str]:
    """NAME=FILE values (a plain FILE where exactly one set is named) as {set name: file}."""
    attached: dict[str, str] = {}
    for value in values:
        name, path = split_name(value)
        if name is None:
            if len(names) != 1:
                raise DataError(f"{flag} {value!r}: several sets ({', '.join(names)}); write {flag} NAME=FILE")
            name = names[0]
        if name not in names:
            raise DataError(f"{flag} {value!r}: no set is named {name!r}; sets: {', '.join(names)}")
        if name in attached:
            raise DataError(f"{flag}: set {name!r} is given two files ({attached[name]}, {path})")
        attached[name] = path
    return attached


def training_sources(data: list[str], test_lists: list[str], groups: list[str],
                     val_data: list[str] = ()) -> list[DataSource]:
    """The training sets of `--data` values, with their `--test-list` and `--groups` files.

    Args:
        data: `NAME=FOLDER` (or a plain FOLDER, named after it, or "synthetic") per training set.
        test_lists: `NAME=FILE` (a plain FILE when there is one set) per set with a test list.
        groups: `NAME=CSV` per set with groups; names of `val_data` sets are accepted (and left to them).
        val_data: the `--val-data` values, only so that a groups file may name them.

    Raises:
        DataError: a name given twice (also between training and validation sets), a file for a set
            that does not exist, or an objective word used as a name.
    """
    sets = _named(data, "--data")
    external = _named(list(val_data), "--val-data")
    names = [name for name, _ in sets]
    if twice := sorted(set(names) & {name for name, _ in external}):
        raise DataError(f"--val-data: the set name {twice[0]!r} is also a --data set; a set is trained on or "
                        f"validated on, not both; give it another name")
    tests = _attach(test_lists, "--test-list", names)
    grouped = _attach(groups, "--groups", names + [name for name, _ in external])
    return [DataSource(name, folder, tests.get(name, ""), grouped.get(name, "")) for name, folder in sets]


def validation_sources(val_data: list[str], groups: list[str], training: list[str] = ()) -> list[DataSource]:
    """The external validation sets of `--val-data` values, with the `--groups` files that name them."""
    external = _named(list(val_data), "--val-data")
    names = [name for name, _ in external]
    grouped = _attach(groups, "--groups", names + list(training))
    return [DataSource(name, folder, "", grouped.get(name, "")) for name, folder in external]


def read_groups(path: str | Path, stems: list[str], set_name: str) -> dict[str, str]:
    """Reads a groups file (CSV, a header, then stem,group per line) for the images `stems`.

    Returns:
        {stem: group} for every stem; an image the file does not list is a group of its own.

    Raises:
        DataError: the file cannot be read, has fewer than two columns, puts one stem in two groups, or
            names no image of the set.
    """
    path = Path(path).expanduser()
    try:
        with open(path, newline="") as handle:
            rows = list(csv.reader(handle))
    except OSError as error:
        raise DataError(f"{path}: cannot read the groups file of set {set_name!r}: {error.strerror}") from None
    if len(rows) < 2 or any(len(row) < 2 for row in rows[1:] if row):
        raise DataError(f"{path}: a groups file is CSV with a header and then stem,group on every line "
                        f"(like CVC-ClinicDB's sequences.csv)")
    groups: dict[str, str] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not row or not row[0].strip():
            continue
        stem, group = Path(row[0].strip()).stem, row[1].strip()
        if stem in groups and groups[stem] != group:
            raise DataError(f"{path}, line {line}: stem {stem!r} is in two groups ({groups[stem]!r} and {group!r}); "
                            f"each image belongs to one group")
        groups[stem] = group
    known = set(stems)
    if not known & set(groups):
        raise DataError(f"{path}: none of its {len(groups)} stems (e.g. {', '.join(list(groups)[:3])}) is an image "
                        f"of set {set_name!r} (e.g. {', '.join(stems[:3])}); is it the groups file of another set?")
    return {stem: groups.get(stem, f"image:{stem}") for stem in stems}


def file_digests(root: str | Path) -> dict[str, Path]:
    """{sha256 of the file's bytes: image file} for every image of a data folder."""
    return {hashlib.sha256(pair.image.read_bytes()).hexdigest(): pair.image for pair in scan_pairs(root).pairs}


def check_no_shared_images(training: dict[str, Path], external: dict[str, Path]) -> None:
    """Refuses a validation set that holds an image of a training set (the same file content), naming them.

    Args:
        training: {set name: folder} of the training sets.
        external: {set name: folder} of the validation sets never trained on.
    """
    seen: dict[str, tuple[str, Path]] = {}
    for name, root in training.items():
        for digest, image in file_digests(root).items():
            seen.setdefault(digest, (name, image))
    for name, root in external.items():
        shared = [(image, seen[digest]) for digest, image in file_digests(root).items() if digest in seen]
        if shared:
            named = "; ".join(f"{image} = {other}" for image, (_, other) in shared[:SHOWN])
            more = f" and {len(shared) - SHOWN} more" if len(shared) > SHOWN else ""
            raise DataError(f"--val-data {name}: {len(shared)} image(s) are also in training set "
                            f"{shared[0][1][0]!r} (same file content): {named}{more}; a validation set must be "
                            f"images the model never trains on")
