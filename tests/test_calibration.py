"""polyp.evaluate.calibration: Dice over thresholds and the reliability counts, against direct computations."""

from __future__ import annotations

import numpy as np
import pytest

from polyp.evaluate.calibration import Reliability, dice_at, dice_curve
from polyp.images import binary_mask


def _dice(predicted: np.ndarray, truth: np.ndarray) -> float:
    total = predicted.sum() + truth.sum()
    return 1.0 if total == 0 else 2 * np.logical_and(predicted, truth).sum() / total


@pytest.mark.parametrize("seed", [0, 1])
def test_dice_at_each_threshold_is_the_dice_of_the_mask_binary_mask_gives(seed):
    rng = np.random.default_rng(seed)
    truth = rng.random((40, 30)) > 0.6
    probability = np.clip(truth * 0.5 + rng.random((40, 30)) * 0.5, 0, 1).astype(np.float32)
    probability[0, :3] = (0.35, 0.5, 0.8)  # exactly on thresholds: counted as polyp, as binary_mask counts them
    thresholds = (0.2, 0.35, 0.5, 0.65, 0.8)
    expected = [_dice(binary_mask(probability, t).astype(bool), truth) for t in thresholds]
    assert dice_at(probability, truth, thresholds) == pytest.approx(expected)
    assert dice_at(np.zeros((4, 4), np.float32), np.zeros((4, 4), bool), thresholds) == pytest.approx([1.0] * 5)
    probability[1, :] = np.nan  # a diverged model's pixels are never polyp, as binary_mask counts them
    expected = [_dice(binary_mask(probability, t).astype(bool), truth) for t in thresholds]
    assert dice_at(probability, truth, thresholds) == pytest.approx(expected)
    with pytest.raises(ValueError, match="ascending"):
        dice_at(probability, truth, (0.5, 0.2))


def test_dice_curve_binarises_the_uint8_map_at_every_level():
    rng = np.random.default_rng(2)
    truth = rng.random((20, 20)) > 0.5
    probability = rng.random((20, 20)).astype(np.float32)
    levels = np.rint(probability.astype(np.float64) * 255)
    curve = dice_curve(probability, truth)
    assert curve.shape == (256,)
    for k in (0, 1, 100, 128, 255):
        assert curve[k] == pytest.approx(_dice(levels >= k, truth))


def test_a_calibrated_map_has_no_calibration_error_and_an_overconfident_one_has():
    truth = np.zeros((10, 10), bool)
    truth[:5] = True
    calibrated = Reliability()
    calibrated.add(truth.astype(np.float32), truth)
    assert calibrated.ece() == pytest.approx(0.0)
    overconfident = Reliability()
    overconfident.add(np.full((10, 10), 0.95, np.float32), truth)  # says 95% where half is polyp
    assert overconfident.ece() == pytest.approx(0.45)
    rows = overconfident.rows()
    assert rows[9]["pixels"] == 100 and rows[9]["polyp_frequency"] == pytest.approx(0.5)
