"""Metrics: counts accumulated over a pass, per-image mean vs pooled Dice, empty images, dice_iou."""

from __future__ import annotations

import pytest
import torch

from polyp.metrics import METRIC_NAMES, SegmentationCounts, dice_iou


def logits_of(prediction: torch.Tensor) -> torch.Tensor:
    """Confident logits for a binary prediction."""
    return prediction.float() * 20 - 10


def mask(height: int, width: int, rows: slice, cols: slice) -> torch.Tensor:
    out = torch.zeros(1, 1, height, width)
    out[..., rows, cols] = 1
    return out


def test_two_batches_count_the_same_as_one():
    torch.manual_seed(0)
    logits = torch.randn(5, 1, 8, 8) * 3
    target = (torch.rand(5, 1, 8, 8) > 0.6).float()

    split, whole = SegmentationCounts(), SegmentationCounts()
    split.update(logits[:2], target[:2])
    split.update(logits[2:], target[2:])
    whole.update(logits, target)

    assert torch.equal(split.stats, whole.stats)
    assert split.compute() == whole.compute()
    assert set(whole.compute()) == set(METRIC_NAMES)


def test_mdice_is_the_mean_over_images_not_over_batches():
    truth = mask(4, 4, slice(0, 2), slice(0, 2))
    counts = SegmentationCounts()
    counts.update(logits_of(truth), truth)  # batch 1: one perfect image, Dice 1
    misses = torch.cat([truth] * 3)
    counts.update(logits_of(torch.zeros_like(misses)), misses)  # batch 2: three images, Dice 0 each

    scores = counts.compute()

    # the mean of the two batch scores would be (1 + 0) / 2 = 0.5
    assert scores["mdice"] == pytest.approx(0.25)
    assert counts.per_image_dice() == [1.0, 0.0, 0.0, 0.0]


def test_pooled_and_per_image_dice_differ_as_computed_by_hand():
    # image A: a 4-pixel polyp found exactly (tp 4, tn 12)   -> Dice 1,   IoU 1
    # image B: a 12-pixel polyp, 4 pixels found (tp 4, fn 8, tn 4) -> Dice 8/16 = 0.5, IoU 4/12
    truth = torch.cat([mask(4, 4, slice(0, 2), slice(0, 2)), mask(4, 4, slice(0, 3), slice(0, 4))])
    prediction = torch.cat([truth[:1], mask(4, 4, slice(0, 1), slice(0, 4))])
    counts = SegmentationCounts()
    counts.update(logits_of(prediction), truth)

    scores = counts.compute()

    assert scores["mdice"] == pytest.approx((1 + 0.5) / 2)
    assert scores["miou"] == pytest.approx((1 + 1 / 3) / 2)
    assert scores["dice_pooled"] == pytest.approx(2 * 8 / (2 * 8 + 8))  # tp 8, fn 8 over both images
    assert scores["iou_pooled"] == pytest.approx(8 / 16)
    assert scores["precision"] == pytest.approx(1.0)
    assert scores["recall"] == pytest.approx(0.5)
    assert scores["accuracy"] == pytest.approx(24 / 32)


def test_empty_truth_and_empty_prediction_score_one():
    empty = torch.zeros(2, 1, 4, 4)
    counts = SegmentationCounts()
    counts.update(logits_of(empty), empty)

    scores = counts.compute()

    assert scores == {name: 1.0 for name in METRIC_NAMES}


def test_a_pass_without_any_prediction_has_no_nan_scores():
    truth = mask(4, 4, slice(0, 2), slice(0, 2))
    counts = SegmentationCounts()
    counts.update(logits_of(torch.zeros_like(truth)), truth)

    scores = counts.compute()

    assert scores["precision"] == 1.0  # nothing predicted, so nothing predicted wrongly
    assert scores["recall"] == 0.0 and scores["dice_pooled"] == 0.0 and scores["mdice"] == 0.0


def test_predicting_a_polyp_where_there_is_none_scores_zero():
    empty = torch.zeros(1, 1, 4, 4)
    counts = SegmentationCounts()
    counts.update(logits_of(mask(4, 4, slice(0, 1), slice(0, 1))), empty)

    assert counts.compute()["mdice"] == 0.0


def test_threshold_is_probability_one_half():
    truth = torch.ones(1, 1, 2, 2)
    counts = SegmentationCounts()
    counts.update(torch.tensor([[[[0.1, -0.1], [3.0, -3.0]]]]), truth)

    assert counts.per_image_dice() == [pytest.approx(2 * 2 / (2 * 2 + 2))]


def test_compute_without_images_is_an_error():
    with pytest.raises(ValueError, match="no images"):
        SegmentationCounts().compute()


@pytest.mark.parametrize(
    ("prediction", "truth", "expected"),
    [
        ([1, 1, 0, 0], [1, 0, 1, 0], (0.5, 1 / 3)),  # tp 1, fp 1, fn 1
        ([1, 1, 0, 0], [1, 1, 0, 0], (1.0, 1.0)),
        ([0, 0, 0, 0], [0, 0, 0, 0], (1.0, 1.0)),  # both empty
        ([0, 0, 0, 0], [1, 0, 0, 0], (0.0, 0.0)),
        ([1, 1, 1, 0], [1, 0, 0, 0], (0.5, 1 / 3)),  # tp 1, fp 2
    ],
)
def test_dice_iou(prediction, truth, expected):
    dice, iou = dice_iou(torch.tensor(prediction, dtype=torch.uint8).view(2, 2), torch.tensor(truth).view(2, 2))

    assert (dice, iou) == pytest.approx(expected)
