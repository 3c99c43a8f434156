"""Two views of a probability map beyond one threshold: Dice over every threshold, and calibration.

- `dice_at`: an image's Dice at each of a few thresholds (what search.auto chooses its threshold by).
- `dice_curve`: an image's Dice at each of the 256 thresholds 0/255..255/255 of its probability map as uint8
  (as the polyp evaluation toolboxes binarise it); the data set's "mDice over thresholds" averages the images'
  curves and then the thresholds (the toolboxes' meanDic). A map and truth both empty score 1.
- `Reliability`: how often a pixel predicted with probability p is polyp, in 10 equal bins of p, over every
  pixel of every image, and the expected calibration error (ECE: the bins' |frequency - mean probability|,
  weighted by their pixels).

Example:
    >>> import numpy as np
    >>> truth = np.zeros((4, 4), bool); truth[:2] = True
    >>> float(dice_curve(truth.astype(np.float32), truth)[128])
    1.0
    >>> reliability = Reliability(); reliability.add(truth.astype(np.float32), truth); reliability.ece()
    0.0
"""

from __future__ import annotations

import numpy as np

BINS = 10


def dice_curve(probability: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Dice of the map binarised at each threshold k/255 (k = 0..255, pixel polyp where its uint8 value >= k)."""
    return _dice_by_level(np.rint(probability.astype(np.float64) * 255).astype(np.int64), truth, 256)


def dice_at(probability: np.ndarray, truth: np.ndarray, thresholds: tuple[float, ...]) -> np.ndarray:
    """Dice of the map binarised at each of `thresholds` (ascending; pixel polyp where probability >= it, as
    polyp.images.binary_mask does)."""
    cuts = np.asarray(thresholds, np.result_type(probability.dtype, np.float32))  # compared in the map's own
    # precision, as `probability >= threshold` compares them
    if np.any(np.diff(cuts) < 0):
        raise ValueError(f"thresholds {thresholds} must be ascending")
    levels = np.searchsorted(cuts, probability, side="right")
    levels[np.isnan(probability)] = 0  # NaN >= t is false: never polyp
    return _dice_by_level(levels, truth, len(thresholds) + 1)[1:]  # level j: at or above the j-th threshold


def _dice_by_level(levels: np.ndarray, truth: np.ndarray, count: int) -> np.ndarray:
    """Dice of `levels >= j` for each j < count (both masks empty: 1), from two histograms."""
    levels, truth = levels.ravel(), truth.astype(bool).ravel()
    predicted = np.cumsum(np.bincount(levels, minlength=count)[::-1])[::-1]  # pixels at level >= j
    hits = np.cumsum(np.bincount(levels[truth], minlength=count)[::-1])[::-1]
    total = predicted + truth.sum()
    return np.where(total > 0, 2 * hits / np.maximum(total, 1), 1.0)


class Reliability:
    """Pixel counts per probability bin, accumulated over images (`add`), and what they show."""

    def __init__(self, bins: int = BINS):
        self.bins = bins
        self.pixels = np.zeros(bins, np.int64)
        self.polyp = np.zeros(bins, np.int64)
        self.probability = np.zeros(bins, np.float64)

    def add(self, probability: np.ndarray, truth: np.ndarray) -> None:
        values = probability.astype(np.float64).ravel()
        index = np.minimum((values * self.bins).astype(np.int64), self.bins - 1)
        self.pixels += np.bincount(index, minlength=self.bins)
        self.polyp += np.bincount(index[truth.astype(bool).ravel()], minlength=self.bins)
        self.probability += np.bincount(index, weights=values, minlength=self.bins)

    def rows(self) -> list[dict[str, float]]:
        """Each bin: its range, pixels, mean predicted probability and observed polyp frequency (NaN: empty)."""
        rows = []
        for b in range(self.bins):
            count = int(self.pixels[b])
            rows.append({"low": b / self.bins, "high": (b + 1) / self.bins, "pixels": count,
                         "mean_probability": self.probability[b] / count if count else float("nan"),
                         "polyp_frequency": self.polyp[b] / count if count else float("nan")})
        return rows

    def ece(self) -> float:
        total = self.pixels.sum()
        if not total:
            return float("nan")
        filled = self.pixels > 0
        gap = np.abs(self.polyp[filled] / self.pixels[filled] - self.probability[filled] / self.pixels[filled])
        return float(np.sum(gap * self.pixels[filled]) / total)
