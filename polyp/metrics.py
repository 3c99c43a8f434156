"""Binary segmentation metrics from per-image tp/fp/fn/tn counts accumulated over a whole pass.

Scores are computed once, at the end, from the counts (`smp.metrics`), never averaged over batches.
"mdice"/"miou" are per-image means (what polyp papers report as mDice/mIoU); "dice_pooled"/"iou_pooled"
pool every pixel of the pass. An image whose truth and prediction are both empty scores 1.

Example:
    >>> import torch
    >>> from polyp.metrics import SegmentationCounts
    >>> counts = SegmentationCounts()
    >>> counts.update(torch.full((2, 1, 4, 4), 5.0), torch.ones(2, 1, 4, 4))
    >>> counts.compute()["mdice"]
    1.0
"""

from __future__ import annotations

import torch
from segmentation_models_pytorch import metrics as smp_metrics

from polyp.images import MASK_THRESHOLD

METRIC_NAMES = ("mdice", "miou", "dice_pooled", "iou_pooled", "precision", "recall", "accuracy")


def image_counts(logits: torch.Tensor, target: torch.Tensor,
                 threshold: float = MASK_THRESHOLD) -> tuple[torch.Tensor, ...]:
    """Returns per-image (tp, fp, fn, tn), each of shape (N,), for logits and binary masks (N,1,H,W).

    A pixel counts as predicted polyp where its probability is at least `threshold`, as in the written masks.
    """
    probs = torch.sigmoid(logits.float())
    tp, fp, fn, tn = smp_metrics.get_stats(probs, target.long(), mode="binary", threshold=threshold)
    return tp[:, 0], fp[:, 0], fn[:, 0], tn[:, 0]


class SegmentationCounts:
    """Accumulates per-image counts over batches; `compute` turns them into scores."""

    def __init__(self) -> None:
        self._stats: list[torch.Tensor] = []

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        """Adds the counts of one batch of logits and binary masks (N,1,H,W)."""
        self._stats.append(torch.stack(image_counts(logits.detach().cpu(), target.detach().cpu()), dim=1))

    @property
    def stats(self) -> torch.Tensor:
        """All per-image counts so far, shape (images, 4) as tp, fp, fn, tn."""
        return torch.cat(self._stats) if self._stats else torch.zeros(0, 4, dtype=torch.long)

    def per_image_dice(self) -> list[float]:
        """Each image's Dice, in the order the images were added."""
        tp, fp, fn, tn = self.stats.T
        return smp_metrics.f1_score(tp, fp, fn, tn, reduction="none", zero_division=1.0).tolist()

    def compute(self) -> dict[str, float]:
        """Returns every score in METRIC_NAMES for the images added so far."""
        if not self._stats:
            raise ValueError("no images were added; cannot compute metrics of an empty pass")
        tp, fp, fn, tn = (column[:, None] for column in self.stats.T)
        # pooled scores use "macro": over our one class it pools every pixel like "micro", but unlike
        # "micro" it applies zero_division (a pass with no polyp and no prediction scores 1, not NaN)
        scores = {
            "mdice": smp_metrics.f1_score(tp, fp, fn, tn, reduction="micro-imagewise", zero_division=1.0),
            "miou": smp_metrics.iou_score(tp, fp, fn, tn, reduction="micro-imagewise", zero_division=1.0),
            "dice_pooled": smp_metrics.f1_score(tp, fp, fn, tn, reduction="macro", zero_division=1.0),
            "iou_pooled": smp_metrics.iou_score(tp, fp, fn, tn, reduction="macro", zero_division=1.0),
            "precision": smp_metrics.precision(tp, fp, fn, tn, reduction="macro", zero_division=1.0),
            "recall": smp_metrics.recall(tp, fp, fn, tn, reduction="macro", zero_division=1.0),
            "accuracy": smp_metrics.accuracy(tp, fp, fn, tn, reduction="micro"),
        }
        return {name: float(value) for name, value in scores.items()}


def dice_iou(prediction: torch.Tensor, truth: torch.Tensor) -> tuple[float, float]:
    """Dice and IoU of one binary prediction against one binary mask (any equal shapes)."""
    pred, true = prediction.bool(), truth.bool()
    tp = (pred & true).sum().item()
    fp = (pred & ~true).sum().item()
    fn = (~pred & true).sum().item()
    if tp + fp + fn == 0:
        return 1.0, 1.0
    return 2 * tp / (2 * tp + fp + fn), tp / (tp + fp + fn)
