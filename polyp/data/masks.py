"""Mask conventions: 0/1, 0/255 (noisy JPEG), 16-bit 0/65535, decided per data set from the values found.

A mask pixel is polyp when it is at least half the largest mask value of the whole data set (rounded up):
0/1 masks binarise at 1, 0/255 masks at 128 (so JPEG noise around the edge falls either side), 0/65535 masks
at 32768. Deciding once per data set rather than per mask keeps a mask that is nearly all background (its
largest value a JPEG grey) from being read under a threshold of its own.

Example:
    >>> import numpy as np
    >>> convention = detect([0, 1, 1])
    >>> convention.name, convention.threshold
    ('0/1', 1)
    >>> convention.binarise(np.array([[0, 1]], np.uint8)).tolist()
    [[0, 1]]
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from polyp.data.folder import DataError


@dataclass(frozen=True)
class MaskConvention:
    """How a data set's masks mark polyp pixels, named by the largest mask value found in it."""

    largest: int  # largest mask value in the data set: 1, 255, 65535, or another value

    @property
    def threshold(self) -> int:
        """Smallest value that is polyp: half the largest, rounded up (at least 1, so 0 is never polyp)."""
        return max(1, (self.largest + 1) // 2)

    @property
    def name(self) -> str:
        """The convention's name: "0/1", "0/255", "0/65535" or "0/<largest>"."""
        return f"0/{self.largest}"

    def binarise(self, mask: np.ndarray) -> np.ndarray:
        """uint8 0/1 array of the same shape: 1 where `mask` is at least the threshold."""
        return (mask >= self.threshold).astype(np.uint8)

    def __str__(self) -> str:
        return f"{self.name} (threshold {self.threshold})"


def detect(largest_values: Iterable[int]) -> MaskConvention:
    """The convention of a data set from the largest value of each of its masks (0/0 when there are none)."""
    return MaskConvention(int(max(largest_values, default=0)))


def read_raw_mask(path: Path) -> np.ndarray:
    """Reads a mask as greyscale at its own depth (H,W uint8 or uint16), values as stored.

    Raises:
        DataError: naming the file when it cannot be decoded or holds non-integer values.
    """
    data = np.fromfile(str(path), dtype=np.uint8)
    mask = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE | cv2.IMREAD_ANYDEPTH) if data.size else None
    if mask is None:
        raise DataError(f"{path}: cannot decode mask (corrupt or not an image)")
    if not np.issubdtype(mask.dtype, np.integer):
        raise DataError(f"{path}: mask holds {mask.dtype} values; save masks as 8- or 16-bit integers (0/1, 0/255 "
                        "or 0/65535)")
    return mask
