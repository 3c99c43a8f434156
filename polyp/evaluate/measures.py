"""Per-image measures of polyp segmentation, as PraNet and Polyp-PVT report them, and their data-set summary.

Conventions:
    - Dice, IoU, precision and recall are computed per image on the mask binarised at `threshold` (a pixel
      is polyp where its probability is at least the threshold, as in the written masks). A ratio whose
      numerator and denominator are both 0 scores 1 (smp's `zero_division=1`, as in `polyp.metrics`): an
      empty prediction on an empty truth scores 1 for all four; an empty prediction on a polyp scores
      precision 1, recall 0; a predicted polyp on an empty truth scores precision 0, recall 1, Dice 0.
    - mDice and mIoU are means of the per-image values, not pooled over pixels.
    - Fβw, Sα, Eφ and MAE are pysodmetrics' (the Python port of the MATLAB toolboxes), on the probability
      map as uint8 0..255 (probability * 255, rounded) against the truth as uint8 0/255. Like the
      toolboxes, pysodmetrics stretches a non-constant map to [0, 1] (MATLAB's mapminmax) first.
    - mean Eφ and max Eφ of a data set average the images' 256-threshold Eφ curves first, then take the
      curve's mean and max (pysodmetrics' `Emeasure.get_results()["em"]["curve"]`); the per-image
      `em_mean`/`em_max` are the same over one image's curve. Eφ divides by H*W - 1 (as the MATLAB
      original does), so a perfect prediction scores H*W / (H*W - 1), a hair above 1.
    - HD95 is the 95th percentile of the distances from each outline pixel of one mask to the other mask's
      outline, both directions pooled (medpy's `hd95`: outline = mask minus its erosion by a 3x3 cross,
      the image edge counting as background), in pixels; NaN when either mask is empty. The data-set
      value is the mean over the images where it is defined.

Example:
    >>> import numpy as np
    >>> from polyp.evaluate.measures import score_image, summarize
    >>> truth = np.zeros((8, 8), bool)
    >>> truth[2:6, 2:6] = True
    >>> scores = score_image(truth.astype(np.float32), truth)
    >>> scores.dice, round(scores.sm, 6), scores.hd95
    (1.0, 1.0, 0.0)
    >>> summarize([scores])["images"]
    1
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import py_sod_metrics
import torch
from segmentation_models_pytorch import metrics as smp_metrics

from polyp.images import MASK_THRESHOLD, binary_mask

MEASURES = ("dice", "iou", "wfm", "sm", "em_mean", "em_max", "mae", "precision", "recall", "hd95")
_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))


@dataclass(frozen=True)
class ImageScores:
    """Every measure of one image; `row()` gives them in MEASURES order."""

    dice: float  # on the binarised mask, 0..1
    iou: float  # on the binarised mask, 0..1
    precision: float  # on the binarised mask, 0..1
    recall: float  # on the binarised mask, 0..1
    wfm: float  # weighted F-measure Fβw (beta 1) of the probability map, 0..1
    sm: float  # structure measure Sα (alpha 0.5), 0..1
    em_mean: float  # mean of this image's 256-threshold Eφ curve
    em_max: float  # max of this image's 256-threshold Eφ curve
    mae: float  # mean absolute error of the probability map, 0..1
    hd95: float  # 95th-percentile symmetric Hausdorff distance of the outlines, pixels; NaN if a mask is empty
    em_curve: np.ndarray  # this image's Eφ at each of the 256 thresholds (pysodmetrics' order)
    truth_empty: bool  # the truth has no polyp pixel
    predicted_empty: bool  # the binarised prediction has no polyp pixel

    def row(self) -> dict[str, float]:
        """The image's measures by name, in MEASURES order."""
        return {name: getattr(self, name) for name in MEASURES}


def score_image(probability: np.ndarray, truth: np.ndarray, threshold: float = MASK_THRESHOLD) -> ImageScores:
    """Scores one probability map against its truth mask.

    Args:
        probability: float HxW map in [0, 1], at the image's own size.
        truth: HxW bool or 0/1 mask of the same size.
        threshold: probability at and above which a pixel counts as polyp for Dice, IoU, precision,
            recall and HD95.

    Returns:
        The image's ImageScores.

    Raises:
        ValueError: if the shapes differ, are not 2-D, or the probability leaves [0, 1].
    """
    _check_inputs(probability, truth)
    truth = truth.astype(bool)
    predicted = binary_mask(probability, threshold).astype(bool)
    dice, iou, precision, recall = _overlap_scores(predicted, truth)
    pred_u8 = np.rint(probability.astype(np.float64) * 255).astype(np.uint8)
    gt_u8 = truth.astype(np.uint8) * 255
    sod = _sod_scores(pred_u8, gt_u8)
    return ImageScores(
        dice=dice, iou=iou, precision=precision, recall=recall, **sod,
        hd95=hd95(predicted, truth), truth_empty=not truth.any(), predicted_empty=not predicted.any(),
    )


def summarize(scores: list[ImageScores]) -> dict[str, float]:
    """The data-set values of every measure, as the polyp literature reports them.

    Each measure is the mean of its per-image values, except mean and max Eφ (the mean and max of the
    images' averaged Eφ curve, as the toolboxes define them) and HD95 (the mean over images where it is
    defined; NaN if it is defined for none).

    Args:
        scores: one ImageScores per image of the data set.

    Returns:
        MEASURES -> value, plus "images" (how many) and "negatives_with_false_positive" (images whose
        truth is empty but whose binarised prediction is not).

    Raises:
        ValueError: if `scores` is empty.
    """
    if not scores:
        raise ValueError("no images were scored; cannot summarize an empty data set")
    summary = {name: float(np.mean([s.row()[name] for s in scores])) for name in MEASURES}
    curve = np.mean([s.em_curve for s in scores], axis=0)
    summary["em_mean"], summary["em_max"] = float(curve.mean()), float(curve.max())
    hd95_values = np.array([s.hd95 for s in scores], dtype=np.float64)
    summary["hd95"] = float(np.nanmean(hd95_values)) if np.isfinite(hd95_values).any() else float("nan")
    summary["images"] = len(scores)
    summary["negatives_with_false_positive"] = sum(s.truth_empty and not s.predicted_empty for s in scores)
    return summary


def hd95(predicted: np.ndarray, truth: np.ndarray) -> float:
    """95th-percentile symmetric Hausdorff distance in pixels between two HxW masks' outlines.

    Args:
        predicted: HxW bool mask.
        truth: HxW bool mask of the same size.

    Returns:
        The distance, or NaN if either mask is empty.
    """
    predicted_outline, truth_outline = _outline(predicted), _outline(truth)
    if not predicted_outline.any() or not truth_outline.any():
        return float("nan")
    distances = np.concatenate([
        _distance_to(truth_outline)[predicted_outline],
        _distance_to(predicted_outline)[truth_outline],
    ])
    return float(np.percentile(distances, 95))


def _check_inputs(probability: np.ndarray, truth: np.ndarray) -> None:
    """Refuses maps that pysodmetrics would misread."""
    if probability.ndim != 2 or probability.shape != truth.shape:
        raise ValueError(f"probability {probability.shape} and truth {truth.shape} must be the same HxW; "
                         "resize the probability map to the image's own size first")
    if probability.size == 0 or np.isnan(probability).any() or probability.min() < 0 or probability.max() > 1:
        raise ValueError("probability values must lie in [0, 1]; apply a sigmoid to logits first")


def _overlap_scores(predicted: np.ndarray, truth: np.ndarray) -> tuple[float, float, float, float]:
    """Dice, IoU, precision and recall of two bool masks, from smp's counts as `polyp.metrics` scores them
    (zero_division=1: 1 where both sides of a ratio are empty)."""
    stats = smp_metrics.get_stats(torch.from_numpy(predicted)[None, None].long(),
                                  torch.from_numpy(truth)[None, None].long(), mode="binary")
    return tuple(float(score(*stats, reduction="none", zero_division=1.0))
                 for score in (smp_metrics.f1_score, smp_metrics.iou_score, smp_metrics.precision, smp_metrics.recall))


def _sod_scores(pred_u8: np.ndarray, gt_u8: np.ndarray) -> dict:
    """wfm, sm, em_mean, em_max, mae and em_curve from one fresh pysodmetrics object each."""
    wfm, sm, em, mae = (py_sod_metrics.WeightedFmeasure(), py_sod_metrics.Smeasure(),
                        py_sod_metrics.Emeasure(), py_sod_metrics.MAE())
    for metric in (wfm, sm, em, mae):
        metric.step(pred_u8, gt_u8)
    curve = np.asarray(em.get_results()["em"]["curve"], dtype=np.float64)
    return {"wfm": float(wfm.get_results()["wfm"]), "sm": float(sm.get_results()["sm"]),
            "em_mean": float(curve.mean()), "em_max": float(curve.max()),
            "mae": float(mae.get_results()["mae"]), "em_curve": curve}


def _outline(mask: np.ndarray) -> np.ndarray:
    """Bool outline of a mask: its pixels with a 4-neighbour outside it (or outside the image)."""
    mask_u8 = mask.astype(np.uint8)
    eroded = cv2.erode(mask_u8, _CROSS, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return (mask_u8 - eroded).astype(bool)


def _distance_to(outline: np.ndarray) -> np.ndarray:
    """Euclidean distance in pixels from every pixel to the nearest pixel of `outline`."""
    source = np.where(outline, 0, 255).astype(np.uint8)
    return cv2.distanceTransform(source, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
