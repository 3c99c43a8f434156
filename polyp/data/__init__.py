"""Polyp data: folder pairing, decoding once, splits, augmentation, and a synthetic set.

Example:
    >>> from polyp.data import prepare_data
    >>> data = prepare_data("synthetic", image_size=64)  # doctest: +SKIP
    >>> len(data.train), len(data.val), len(data.test)  # doctest: +SKIP
    (32, 4, 4)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from polyp.data.augment import IMAGENET_MEAN, IMAGENET_STD, build_augmentation
from polyp.data.dataset import SegmentationDataset
from polyp.data.folder import DataError, Pair, find_pairs
from polyp.data.loading import ImageSet, load_images, read_image, read_mask
from polyp.data.masks import MaskConvention, read_raw_mask
from polyp.data.sources import (
    DataSource,
    check_no_shared_images,
    default_name,
    read_groups,
    training_sources,
    validation_sources,
)
from polyp.data.splits import Split, limited_stems, make_split, read_test_list
from polyp.data.synthetic import synthetic_folder, write_synthetic
from polyp.selection import objective_problem

__all__ = [
    "IMAGENET_MEAN", "IMAGENET_STD", "DataError", "DataSource", "ImageSet", "MaskConvention", "Pair", "PolypData",
    "SegmentationDataset", "Split", "build_augmentation", "default_cache_dir", "find_pairs", "load_images",
    "make_split", "prepare_data", "read_image", "split_groups", "read_mask", "read_raw_mask", "read_test_list", "resolve_data_dir",
    "synthetic_folder", "training_sources", "validation_sources", "write_synthetic",
]

SYNTHETIC = "synthetic"
NOTE_NAMES_SHOWN = 5  # skipped files named in the note; the rest are counted


@dataclass(frozen=True)
class SetSummary:
    """One data set of a run, for the data line: where it is, what it holds, how much of it each part took."""

    name: str
    root: Path
    images: int
    without_polyp: int
    convention: str
    train: int = 0
    val: int = 0
    test: int = 0
    scored: int = 0  # an external validation set: the images scored every epoch (--val-limit)


@dataclass
class PolypData:
    """The decoded train/val/test images of a run's data sets, its external validation sets and the split.

    With several training sets, the stems of `train`, `val` and `test` are written "name/stem".
    """

    root: Path
    split: Split
    train: ImageSet
    val: ImageSet
    test: ImageSet
    external: dict[str, ImageSet] = field(default_factory=dict)  # validation sets never trained on, by name
    objective: str = "mean"  # the score that picks the best epoch (polyp.selection)
    sets: list[SetSummary] = field(default_factory=list)  # the training sets (empty: one, as `root` says)
    outside: list[SetSummary] = field(default_factory=list)  # the external validation sets

    @property
    def set_names(self) -> list[str]:
        """The training sets' names."""
        return [summary.name for summary in self.sets]

    def val_parts(self) -> dict[str, list[int]]:
        """With several training sets, the positions in `val` of each set's images; else empty."""
        if len(self.sets) < 2:
            return {}
        return {name: [i for i, stem in enumerate(self.val.stems) if stem.startswith(f"{name}/")]
                for name in self.set_names}

    def describe(self, image_size: int) -> str:
        """One line for the commands to print: the folder, images without a polyp, mask convention, split.

        Example: `data /data/kvasir-seg: 1000 images, 0 without a polyp; masks 0/255 (threshold 128):
        800 train, 100 val, 100 test at 64 px`. Several sets, or external validation sets, get a part each:
        `data kvasir /data/kvasir-seg: ...; cvc /data/cvc: ...; validation only: cvc2 /data/x: 609 images,
        100 scored; at 192 px`.
        """
        if len(self.sets) <= 1 and not self.outside:
            parts = (self.train, self.val, self.test)
            total = sum(len(part) for part in parts)
            without = sum(not has for part in parts for has in part.has_polyp)
            return (f"data {self.root}: {total} images, {without} without a polyp; masks {self.train.convention}: "
                    f"{len(self.train)} train, {len(self.val)} val, {len(self.test)} test at {image_size} px")
        inside = "; ".join(f"{s.name} {s.root}: {s.images} images, {s.without_polyp} without a polyp; masks "
                           f"{s.convention}: {s.train} train, {s.val} val, {s.test} test" for s in self.sets)
        outside = "; ".join(f"{s.name} {s.root}: {s.images} images, {s.scored} scored" for s in self.outside)
        line = f"data {inside}"
        if outside:
            line += f"; validation only: {outside}"
        return f"{line}; at {image_size} px"

    def notes(self) -> list[str]:
        """Lines to print under `describe`: the files operating systems leave behind that were skipped."""
        skipped = self.train.skipped
        if not skipped:
            return []
        named = ", ".join(skipped[:NOTE_NAMES_SHOWN])
        more = f" and {len(skipped) - NOTE_NAMES_SHOWN} more" if len(skipped) > NOTE_NAMES_SHOWN else ""
        files = "file" if len(skipped) == 1 else "files"
        return [f"note: skipped {len(skipped)} {files} that operating systems leave behind: {named}{more}"]


def default_cache_dir() -> Path:
    """Where decoded arrays and generated synthetic sets are cached ($POLYP_CACHE or ~/.cache/polyp)."""
    return Path(os.environ.get("POLYP_CACHE", Path.home() / ".cache" / "polyp"))


def resolve_data_dir(data: str | Path, synthetic_count: int = 96, synthetic_size: int = 64) -> Path:
    """Returns the folder for `data`; "synthetic" generates (once) and returns the synthetic set."""
    if str(data) == SYNTHETIC:
        return synthetic_folder(default_cache_dir(), count=synthetic_count, size=max(64, synthetic_size))
    return Path(data).expanduser()


def _sources(data: str | Path | DataSource | list[DataSource], test_list: str | Path | None) -> list[DataSource]:
    if isinstance(data, (list, tuple)):
        if test_list is not None:
            raise DataError("several data sets: give each its own test list (DataSource.test_list)")
        return list(data)
    if isinstance(data, DataSource):
        return [data]
    name = SYNTHETIC if str(data) == SYNTHETIC else default_name(str(data))
    return [DataSource(name, str(data), str(test_list) if test_list else "")]


def _summary(name: str, root: Path, images: ImageSet, split: Split | None = None, scored: int = 0) -> SetSummary:
    counts = (len(split.train), len(split.val), len(split.test)) if split else (0, 0, 0)
    return SetSummary(name, root, len(images), sum(not has for has in images.has_polyp), str(images.convention),
                      *counts, scored=scored)


def _set_split(source: DataSource, images: ImageSet, reused: Split | None, several: bool, seed: int,
               val_fraction: float, test_fraction: float) -> Split:
    """The split of one training set: its part of a reused split, or a new one (by its groups, if any)."""
    if reused is None:
        groups = read_groups(source.groups, images.stems, source.name) if source.groups else None
        return make_split(images.stems, seed, val_fraction, test_fraction, source.test_list or None, groups)
    if not several:
        return reused
    prefix = f"{source.name}/"

    def mine(stems: list[str]) -> list[str]:
        return [stem[len(prefix):] for stem in stems if stem.startswith(prefix)]

    return Split(mine(reused.train), mine(reused.val), mine(reused.test), reused.seed, reused.method)


def _check_reused(split: Split, root: Path, images: ImageSet) -> None:
    missing = sorted(set(split.train + split.val + split.test) - set(images.stems))
    if missing:
        raise DataError(f"{root}: split names {len(missing)} stem(s) not in the data: {', '.join(missing[:10])}")


def split_groups(sources: list[DataSource], split: Split) -> dict[str, str] | None:
    """{stem of the split: group} of the training sets with a groups file (stems as the split writes them), for
    dealing cross-validation folds by group (`Split.with_folds`); None when no set has one."""
    groups: dict[str, str] = {}
    for source in sources:
        if not source.groups:
            continue
        prefix = f"{source.name}/" if split.sets else ""
        stems = [stem[len(prefix):] for stem in split.train + split.val if stem.startswith(prefix)]
        for stem, group in read_groups(source.groups, stems, source.name).items():
            groups[prefix + stem] = f"{source.name}:{group}"
    return groups or None


def prepare_data(
    data: str | Path | DataSource | list[DataSource],
    image_size: int,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    test_list: str | Path | None = None,
    split: Split | None = None,
    cache: bool = True,
    synthetic_count: int = 96,
    *,
    external: list[DataSource] = (),
    val_limit: int = 0,
    objective: str = "mean",
) -> PolypData:
    """Finds, checks, decodes and splits a run's data sets (a folder, "synthetic", or named `DataSource`s).

    Args:
        data: a folder with images/ and masks/, "synthetic", or the training sets (`training_sources`); each
            set is split on its own (whole groups at a time when it has a groups file).
        image_size: square side the images are resized to once.
        seed: split seed.
        val_fraction: validation share of each set's images.
        test_fraction: test share (ignored with a test list or `split`).
        test_list: file of test stems (one folder only; a `DataSource` has its own).
        split: a split to reuse (e.g. loaded from a manifest); overrides the fractions.
        cache: keep decoded arrays on disk under default_cache_dir(), keyed by content and size.
        synthetic_count: images generated when a set is "synthetic".
        external: validation sets never trained on, scored every epoch (`validation_sources`).
        val_limit: score at most this many images of each external set (chosen once by `seed`, whole groups at a
            time, and kept in the split); 0 = all.
        objective: the score that picks the best epoch (`polyp.selection`); checked against the sets' names.

    Returns:
        The decoded splits.

    Raises:
        DataError: a folder, test list, groups file or reused split that cannot be used; an external set that
            shares an image with a training set; an objective that names no set.
    """
    sources = _sources(data, test_list)
    external = list(external)
    if problem := objective_problem(objective, [s.name for s in sources], [s.name for s in external]):
        raise DataError(problem)
    if val_limit < 0:
        raise DataError(f"val_limit: {val_limit} is negative (0 = every image of each validation set)")
    cache_dir = default_cache_dir() / "decoded" if cache else None
    several = len(sources) > 1
    if split is not None and (several or split.sets) and sorted(split.sets) != sorted(s.name for s in sources):
        raise DataError(f"the split holds the sets {', '.join(sorted(split.sets)) or '(one unnamed set)'}, this run "
                        f"has {', '.join(s.name for s in sources)}")
    roots, parts, splits = {}, {}, {}
    for source in sources:
        root = resolve_data_dir(source.folder, synthetic_count, synthetic_size=image_size)
        images = load_images(root, image_size, cache_dir)
        part = _set_split(source, images, split, several, seed, val_fraction, test_fraction)
        if split is not None:
            _check_reused(part, root, images)
        roots[source.name], parts[source.name], splits[source.name] = root, images, part
    if objective in splits and not splits[objective].val:
        raise DataError(f"objective {objective!r}: set {objective!r} has no validation images (val fraction "
                        f"{val_fraction}), so it cannot pick the best epoch; use mean, worst or a --val-data set")
    outside_roots = {s.name: resolve_data_dir(s.folder, synthetic_count, synthetic_size=image_size) for s in external}
    if outside_roots:
        check_no_shared_images(roots, outside_roots)
    outside, outside_sets, chosen = {}, [], {}
    for source in external:
        root = outside_roots[source.name]
        images = load_images(root, image_size, cache_dir)
        stored = (split.external.get(source.name) or {}).get("stems") if split is not None else None
        if stored is not None and len(stored) != (min(val_limit, len(images)) if val_limit else len(images)):
            raise DataError(f"the split scores {len(stored)} images of validation set {source.name!r}, this run asks "
                            f"for {val_limit or 'all'} of its {len(images)} (--val-limit); give the same limit, or "
                            f"use a new run folder for another")
        if stored is None:
            groups = read_groups(source.groups, images.stems, source.name) if source.groups else None
            stored = limited_stems(images.stems, val_limit, seed, groups)
        _check_reused(Split(list(stored), [], [], seed, ""), root, images)
        outside[source.name] = images.subset(list(stored))
        outside_sets.append(_summary(source.name, root, images, scored=len(stored)))
        chosen[source.name] = {"folder": str(root), "stems": list(stored)}
    summaries = [_summary(name, roots[name], parts[name], splits[name]) for name in parts]
    first = sources[0].name
    if not several:
        final = split or splits[first]
        final = Split(final.train, final.val, final.test, final.seed, final.method, final.folds, final.sets, chosen)
        images = parts[first]
        return PolypData(roots[first], final, images.subset(final.train), images.subset(final.val),
                         images.subset(final.test), outside, objective, summaries, outside_sets)
    sets = {name: {"folder": str(roots[name]), "train": part.train, "val": part.val, "test": part.test,
                   "method": part.method} for name, part in splits.items()}
    if split is not None:
        final = Split(split.train, split.val, split.test, split.seed, split.method, split.folds, split.sets or sets, chosen)
    else:
        final = Split(*([f"{name}/{stem}" for name, part in splits.items() for stem in getattr(part, key)]
                        for key in ("train", "val", "test")), seed, "per set", sets=sets, external=chosen)
    joined = {key: ImageSet.joined({name: parts[name].subset(getattr(splits[name], key)) for name in parts})
              for key in ("train", "val", "test")}
    return PolypData(roots[first], final, joined["train"], joined["val"], joined["test"], outside, objective,
                     summaries, outside_sets)
