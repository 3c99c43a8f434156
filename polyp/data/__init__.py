"""Polyp data: folder pairing, decoding once, splits, augmentation, and a synthetic set.

Example:
    >>> from polyp.data import prepare_data
    >>> data = prepare_data("synthetic", image_size=64)  # doctest: +SKIP
    >>> len(data.train), len(data.val), len(data.test)  # doctest: +SKIP
    (32, 4, 4)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from polyp.data.augment import IMAGENET_MEAN, IMAGENET_STD, build_augmentation
from polyp.data.dataset import SegmentationDataset
from polyp.data.folder import DataError, Pair, find_pairs
from polyp.data.loading import ImageSet, load_images, read_image, read_mask
from polyp.data.masks import MaskConvention, read_raw_mask
from polyp.data.splits import Split, make_split, read_test_list
from polyp.data.synthetic import synthetic_folder, write_synthetic

__all__ = [
    "IMAGENET_MEAN", "IMAGENET_STD", "DataError", "ImageSet", "MaskConvention", "Pair", "PolypData",
    "SegmentationDataset", "Split", "build_augmentation", "default_cache_dir", "find_pairs", "load_images",
    "make_split", "prepare_data", "read_image", "read_mask", "read_raw_mask", "read_test_list", "resolve_data_dir",
    "synthetic_folder", "write_synthetic",
]

SYNTHETIC = "synthetic"
NOTE_NAMES_SHOWN = 5  # skipped files named in the note; the rest are counted


@dataclass
class PolypData:
    """The decoded train/val/test images of one data folder and the split that chose them."""

    root: Path
    split: Split
    train: ImageSet
    val: ImageSet
    test: ImageSet

    def describe(self, image_size: int) -> str:
        """One line for the commands to print: the folder, images without a polyp, mask convention, split.

        Example: `data /data/kvasir-seg: 1000 images, 0 without a polyp; masks 0/255 (threshold 128):
        800 train, 100 val, 100 test at 64 px`.
        """
        parts = (self.train, self.val, self.test)
        total = sum(len(part) for part in parts)
        without = sum(not has for part in parts for has in part.has_polyp)
        return (f"data {self.root}: {total} images, {without} without a polyp; masks {self.train.convention}: "
                f"{len(self.train)} train, {len(self.val)} val, {len(self.test)} test at {image_size} px")

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
    return Path(data)


def prepare_data(
    data: str | Path,
    image_size: int,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    test_list: str | Path | None = None,
    split: Split | None = None,
    cache: bool = True,
    synthetic_count: int = 96,
) -> PolypData:
    """Finds, checks, decodes and splits a data folder (or "synthetic").

    Args:
        data: a folder with images/ and masks/, or "synthetic".
        image_size: square side the images are resized to once.
        seed: split seed.
        val_fraction: validation share of all images.
        test_fraction: test share (ignored with `test_list` or `split`).
        test_list: file of test stems.
        split: a split to reuse (e.g. loaded from a manifest); overrides the fractions.
        cache: keep decoded arrays on disk under default_cache_dir(), keyed by content and size.
        synthetic_count: images generated when `data` is "synthetic".

    Returns:
        The decoded splits.
    """
    root = resolve_data_dir(data, synthetic_count, synthetic_size=image_size)
    images = load_images(root, image_size, default_cache_dir() / "decoded" if cache else None)
    if split is None:
        split = make_split(images.stems, seed, val_fraction, test_fraction, test_list)
    else:
        missing = sorted(set(split.train + split.val + split.test) - set(images.stems))
        if missing:
            raise DataError(f"{root}: split names {len(missing)} stem(s) not in the data: {', '.join(missing[:10])}")
    return PolypData(root, split, images.subset(split.train), images.subset(split.val), images.subset(split.test))
