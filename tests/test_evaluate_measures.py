"""The per-image polyp measures against hand-computed values on tiny masks, and against pysodmetrics."""

from __future__ import annotations

import math

import numpy as np
import py_sod_metrics
import pytest

from polyp.evaluate.measures import MEASURES, hd95, score_image, summarize


def square(size: tuple[int, int], top: int, left: int, side: int) -> np.ndarray:
    """A bool mask of `size` with a side x side square of polyp at (top, left)."""
    mask = np.zeros(size, bool)
    mask[top:top + side, left:left + side] = True
    return mask


def as_probability(mask: np.ndarray, inside: float = 0.9, outside: float = 0.1) -> np.ndarray:
    """A float32 probability map that binarises at 0.5 to `mask`."""
    return np.where(mask, inside, outside).astype(np.float32)


@pytest.mark.parametrize(("predicted", "dice", "iou", "precision", "recall"), [
    (square((8, 8), 0, 2, 4), 0.5, 1 / 3, 0.5, 0.5),  # 8 of 16 overlap, 8 false, 8 missed
    (square((8, 8), 0, 0, 2), 8 / 20, 4 / 16, 1.0, 4 / 16),  # 4 of 16 found, none false
])
def test_overlap_scores_of_a_known_overlap_match_hand_values(predicted, dice, iou, precision, recall):
    truth = square((8, 8), 0, 0, 4)
    scores = score_image(as_probability(predicted), truth)
    assert (scores.dice, scores.iou, scores.precision, scores.recall) == pytest.approx(
        (dice, iou, precision, recall))


def test_probability_at_the_threshold_counts_as_polyp():
    truth = square((8, 8), 2, 2, 4)
    scores = score_image(as_probability(truth, inside=0.5), truth)
    assert scores.dice == 1.0 and not scores.predicted_empty


def test_empty_prediction_on_empty_truth_scores_one():
    truth = np.zeros((8, 8), bool)
    scores = score_image(np.full((8, 8), 0.1, np.float32), truth)
    assert (scores.dice, scores.iou, scores.precision, scores.recall) == (1.0, 1.0, 1.0, 1.0)
    assert scores.truth_empty and scores.predicted_empty
    assert math.isnan(scores.hd95)
    assert summarize([scores])["negatives_with_false_positive"] == 0


def test_predicted_polyp_on_empty_truth_is_a_negative_with_a_false_positive():
    truth = np.zeros((8, 8), bool)
    scores = score_image(as_probability(square((8, 8), 2, 2, 3)), truth)
    assert (scores.dice, scores.iou, scores.precision) == (0.0, 0.0, 0.0)
    assert scores.truth_empty and not scores.predicted_empty
    assert math.isnan(scores.hd95)
    summary = summarize([scores, score_image(np.zeros((8, 8), np.float32), truth)])
    assert summary["negatives_with_false_positive"] == 1 and summary["images"] == 2


def test_mae_of_a_constant_map_matches_hand_value():
    truth = square((8, 8), 0, 0, 4)  # 16 polyp pixels of 64
    scores = score_image(np.full((8, 8), 0.2, np.float32), truth)
    assert scores.mae == pytest.approx((48 * 0.2 + 16 * 0.8) / 64)


def test_perfect_prediction_scores_best_on_every_measure():
    truth = square((16, 16), 5, 4, 6)
    scores = score_image(truth.astype(np.float32), truth)
    assert scores.dice == scores.iou == scores.precision == scores.recall == 1.0
    assert scores.sm == pytest.approx(1.0)
    assert scores.wfm == pytest.approx(1.0)
    # pysodmetrics (like the MATLAB original) divides Eφ by H*W - 1
    assert scores.em_max == pytest.approx(256 / 255)
    assert scores.mae == 0.0 and scores.hd95 == 0.0


@pytest.mark.parametrize("offset", [1, 2, 3])
@pytest.mark.parametrize("axis", [0, 1])
def test_hd95_of_two_squares_offset_by_k_pixels_is_k(offset, axis):
    truth = square((16, 16), 4, 4, 6)
    predicted = np.roll(truth, offset, axis=axis)
    assert hd95(predicted, truth) == pytest.approx(offset)
    assert score_image(as_probability(predicted), truth).hd95 == pytest.approx(offset)


def test_hd95_counts_the_image_edge_as_outline():
    truth = np.ones((8, 8), bool)  # the outline is the image's frame
    assert hd95(truth, truth) == 0.0
    assert hd95(square((8, 8), 0, 0, 7), truth) == pytest.approx(1.0)


def test_summary_hd95_is_the_mean_over_images_where_it_is_defined():
    truth = square((16, 16), 4, 4, 6)
    shifted = score_image(as_probability(np.roll(truth, 2, axis=1)), truth)
    missed = score_image(np.zeros((16, 16), np.float32), truth)
    assert math.isnan(missed.hd95)
    assert summarize([shifted, missed])["hd95"] == pytest.approx(2.0)
    assert math.isnan(summarize([missed])["hd95"])


def sample_images() -> list[tuple[np.ndarray, np.ndarray]]:
    """Probability maps and truths of several sizes, one with empty truth and one constant map."""
    rng = np.random.default_rng(0)
    truths = [square((16, 16), 3, 5, 7), square((12, 20), 2, 8, 6), np.zeros((16, 16), bool),
              square((16, 16), 0, 0, 16)]
    images = []
    for truth in truths:
        noise = rng.uniform(0, 0.6, truth.shape)
        images.append((np.clip(np.where(truth, 1 - noise, noise), 0, 1).astype(np.float32), truth))
    images.append((np.full((10, 10), 0.3, np.float32), square((10, 10), 2, 2, 5)))
    return images


def test_summary_matches_pysodmetrics_over_the_same_images():
    images = sample_images()
    metrics = {"em": py_sod_metrics.Emeasure(), "sm": py_sod_metrics.Smeasure(),
               "wfm": py_sod_metrics.WeightedFmeasure(), "mae": py_sod_metrics.MAE()}
    for probability, truth in images:
        # rounded in float64: float32 0.3 * 255 rounds to 76.5 and then to 76, not 77
        pred = np.rint(probability.astype(np.float64) * 255).astype(np.uint8)
        for metric in metrics.values():
            metric.step(pred, truth.astype(np.uint8) * 255)
    summary = summarize([score_image(probability, truth) for probability, truth in images])
    curve = metrics["em"].get_results()["em"]["curve"]
    assert summary["em_mean"] == pytest.approx(curve.mean())
    assert summary["em_max"] == pytest.approx(curve.max())
    assert summary["sm"] == pytest.approx(metrics["sm"].get_results()["sm"])
    assert summary["wfm"] == pytest.approx(metrics["wfm"].get_results()["wfm"])
    assert summary["mae"] == pytest.approx(metrics["mae"].get_results()["mae"])


def test_summary_em_max_is_the_max_of_the_mean_curve_not_the_mean_of_maxima():
    scores = [score_image(probability, truth) for probability, truth in sample_images()]
    assert summarize(scores)["em_max"] <= np.mean([s.em_max for s in scores])
    assert summarize(scores)["em_max"] == pytest.approx(np.mean([s.em_curve for s in scores], axis=0).max())


def test_row_and_summary_give_every_measure_in_column_order():
    truth = square((8, 8), 2, 2, 4)
    scores = score_image(as_probability(truth), truth)
    assert list(scores.row()) == list(MEASURES)
    assert list(summarize([scores]))[:len(MEASURES)] == list(MEASURES)


@pytest.mark.parametrize(("probability", "truth", "message"), [
    (np.zeros((8, 8), np.float32), np.zeros((8, 9), bool), "same HxW"),
    (np.full((8, 8), 1.5, np.float32), np.zeros((8, 8), bool), r"\[0, 1\]"),
    (np.full((8, 8), -0.1, np.float32), np.zeros((8, 8), bool), r"\[0, 1\]"),
    (np.full((8, 8), np.nan, np.float32), np.zeros((8, 8), bool), r"\[0, 1\]"),
])
def test_bad_inputs_are_refused_with_a_message(probability, truth, message):
    with pytest.raises(ValueError, match=message):
        score_image(probability, truth)


def test_summarize_refuses_no_images():
    with pytest.raises(ValueError, match="no images"):
        summarize([])
