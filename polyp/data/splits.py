"""Train/val/test splits: seeded fractions or a list of test stems, saved as a JSON manifest."""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from polyp.data.folder import DataError
from polyp.io import write_json


@dataclass(frozen=True)
class Split:
    """Stems of the training, validation and test images, and how they were chosen."""

    train: list[str]
    val: list[str]
    test: list[str]
    seed: int
    method: str  # "fractions" or "test-list:<file>"
    folds: list[list[str]] = field(default_factory=list)  # cross-validation folds of train + val (empty: none)
    sets: dict[str, dict] = field(default_factory=dict)  # several training sets: name -> its own split (folder,
    #   train, val, test, method); the lists above then hold "name/stem"
    external: dict[str, dict] = field(default_factory=dict)  # validation sets never trained on: name -> folder, stems

    def with_folds(self, count: int, seed: int = 0, groups: dict[str, str] | None = None) -> Split:
        """This split with its train and validation images dealt, shuffled by `seed`, into `count` folds
        (the test images stay out of every fold); with `groups` ({stem: group}) whole groups at a time, each
        to the fold that holds the fewest images so far."""
        pool = sorted(self.train + self.val)
        if not 2 <= count <= len(pool):
            raise DataError(f"folds: {count} folds need 2..{len(pool)} (the {len(pool)} non-test images)")
        if not groups:
            random.Random(seed).shuffle(pool)
            return replace(self, folds=[sorted(pool[index::count]) for index in range(count)])
        units = _units(pool, {stem: groups.get(stem, f"image:{stem}") for stem in pool}, seed)
        if len(units) < count:
            raise DataError(f"folds: {count} folds need at least {count} groups; the non-test images are in "
                            f"{len(units)}")
        folds: list[list[str]] = [[] for _ in range(count)]
        for unit in sorted(units, key=len, reverse=True):  # largest first: folds of near-equal size
            min(folds, key=len).extend(unit)
        return replace(self, folds=[sorted(fold) for fold in folds])

    def fold(self, index: int) -> Split:
        """The split that validates on fold `index` and trains on the other folds (the same test images)."""
        if not 0 <= index < len(self.folds):
            raise DataError(f"fold {index}: the split has {len(self.folds)} folds")
        train = sorted(stem for number, fold in enumerate(self.folds) if number != index for stem in fold)
        return replace(self, train=train, val=list(self.folds[index]), method=f"{self.method}, fold {index}")

    def save(self, path: str | Path) -> None:
        """Writes the split as a JSON manifest (atomically)."""
        write_json(path, asdict(self))

    @classmethod
    def load(cls, path: str | Path) -> Split:
        """Reads a manifest written by `save`."""
        try:
            data = json.loads(Path(path).read_text())
            return cls(**data)
        except (OSError, ValueError, TypeError) as error:
            raise DataError(f"{path}: not a split manifest: {error}") from None


def read_test_list(path: str | Path) -> list[str]:
    """Reads a file of test stems, one per line (file names with suffixes are accepted)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"{path}: test list does not exist")
    stems = [Path(line.strip()).stem for line in path.read_text().splitlines() if line.strip()]
    if not stems:
        raise DataError(f"{path}: test list is empty")
    return stems


def _units(stems: list[str], groups: dict[str, str] | None, seed: int) -> list[list[str]]:
    """`stems` as shuffled units: one stem each, or (with `groups`) every stem of one group together."""
    if not groups:
        units = [[stem] for stem in stems]
    else:
        by_group: dict[str, list[str]] = {}
        for stem in stems:
            by_group.setdefault(groups[stem], []).append(stem)
        units = [by_group[group] for group in sorted(by_group)]
    random.Random(seed).shuffle(units)
    return units


def _take(units: list[list[str]], count: int) -> tuple[list[str], list[list[str]]]:
    """Whole units from the front until they hold at least `count` stems; the stems and the units left."""
    taken: list[str] = []
    while units and len(taken) < count:
        taken += units.pop(0)
    return sorted(taken), units


def limited_stems(stems: list[str], limit: int, seed: int, groups: dict[str, str] | None = None) -> list[str]:
    """At most `limit` of `stems` (all of them when `limit` is 0), chosen by `seed`, whole groups at a time
    (the last group is cut to keep the limit)."""
    if not limit or limit >= len(stems):
        return sorted(stems)
    return sorted([stem for unit in _units(sorted(stems), groups, seed) for stem in unit][:limit])


def make_split(
    stems: list[str],
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    test_list: str | Path | None = None,
    groups: dict[str, str] | None = None,
) -> Split:
    """Splits `stems` into train/val/test.

    Args:
        stems: every image stem of the data set.
        seed: shuffling seed; the same seed and stems give the same split.
        val_fraction: share of all images for validation.
        test_fraction: share of all images for testing (ignored with `test_list`).
        test_list: a file of test stems (e.g. the PraNet Kvasir list); the rest is split into train/val.
        groups: {stem: group} (`polyp.data.sources.read_groups`): every group lands on one side of the split
            (a group the test list cuts keeps its other images together), so frames of one video never sit
            in both training and validation.

    Returns:
        The split, each part sorted.
    """
    if groups:
        return _group_split(stems, seed, val_fraction, test_fraction, test_list, groups)
    if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise DataError(f"val_fraction {val_fraction} and test_fraction {test_fraction} must leave images to train on")
    ordered = sorted(stems)
    if test_list is not None:
        wanted = read_test_list(test_list)
        missing = sorted(set(wanted) - set(ordered))
        if missing:
            raise DataError(f"{test_list}: {len(missing)} stem(s) not in the data: {', '.join(missing[:10])}")
        test = sorted(set(wanted))
        rest = [s for s in ordered if s not in set(test)]
        random.Random(seed).shuffle(rest)
        n_val = round(len(ordered) * val_fraction)
        method = f"test-list:{Path(test_list).name}"
    else:
        rest = list(ordered)
        random.Random(seed).shuffle(rest)
        n_test = max(1, round(len(ordered) * test_fraction)) if test_fraction > 0 else 0
        test, rest = sorted(rest[:n_test]), rest[n_test:]
        n_val = round(len(ordered) * val_fraction)
        method = "fractions"
    n_val = max(1, n_val) if val_fraction > 0 else 0
    val, train = sorted(rest[:n_val]), sorted(rest[n_val:])
    if not train or (val_fraction > 0 and not val):
        raise DataError(f"{len(ordered)} images are too few to split into train/val/test")
    return Split(train=train, val=val, test=test, seed=seed, method=method)


def _group_split(stems: list[str], seed: int, val_fraction: float, test_fraction: float,
                 test_list: str | Path | None, groups: dict[str, str]) -> Split:
    plain = make_split(stems, seed, val_fraction, test_fraction, test_list)  # checks the fractions and list
    ordered = sorted(stems)
    if test_list is not None:
        test = plain.test
        units = _units([s for s in ordered if s not in set(test)], groups, seed)
    else:
        units = _units(ordered, groups, seed)
        test, units = _take(units, len(plain.test))
    val, units = _take(units, len(plain.val))
    train = sorted(stem for unit in units for stem in unit)
    if not train or (val_fraction > 0 and not val):
        raise DataError(f"{len(ordered)} images in {len(set(groups.values()))} groups are too few to split into "
                        f"train/val/test by group")
    return Split(train=train, val=val, test=test, seed=seed, method=f"{plain.method}, by group")
