"""Segmentation losses from `smp.losses`, combined as weighted sums written like "bce+0.5*dice".

Example:
    >>> import torch
    >>> from polyp.losses import build_loss
    >>> loss = build_loss("bce+0.5*dice")
    >>> float(loss(torch.zeros(1, 1, 8, 8), torch.ones(1, 1, 8, 8))) > 0
    True
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from segmentation_models_pytorch import losses as smp_losses
from torch import nn

LOSS_NAMES = ("bce", "dice", "focal", "tversky", "jaccard", "lovasz", "structure")
_TERM = re.compile(r"^\s*(?:(\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)\s*\*\s*)?([a-z]+)\s*$")


def parse_loss_spec(spec: str) -> list[tuple[float, str]]:
    """Splits "bce+0.5*dice" into [(1.0, "bce"), (0.5, "dice")].

    Raises:
        ValueError: an empty spec, a malformed term, an unknown loss name or a repeated name.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError("empty loss; write e.g. 'bce+dice' or 'bce+0.5*dice'")
    terms: list[tuple[float, str]] = []
    for part in spec.split("+"):
        match = _TERM.match(part)
        if not match:
            raise ValueError(f"cannot read term {part.strip()!r} of {spec!r}; write WEIGHT*NAME or NAME")
        weight, name = float(match.group(1) or 1.0), match.group(2)
        if name not in LOSS_NAMES:
            raise ValueError(f"unknown loss {name!r} in {spec!r}; valid: {', '.join(LOSS_NAMES)}")
        if any(name == seen for _, seen in terms):
            raise ValueError(f"loss {name!r} appears twice in {spec!r}; merge the weights")
        if weight <= 0:
            raise ValueError(f"weight of {name!r} must be positive in {spec!r}")
        terms.append((weight, name))
    return terms


class StructureLoss(nn.Module):
    """PraNet's structure loss: weighted BCE + weighted IoU, each pixel weighted 1 + 5·|avgpool31(mask) − mask|.

    The weight is largest near the polyp's boundary (where the 31×31 neighbourhood mixes polyp and
    background), so the loss asks most where models of another centre fail: the edges. Per image, then
    averaged over the batch, as PraNet (Fan et al., MICCAI 2020) computes it.
    """

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        weight = 1 + 5 * torch.abs(F.avg_pool2d(target, kernel_size=31, stride=1, padding=15) - target)
        bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        weighted_bce = (weight * bce).sum(dim=(2, 3)) / weight.sum(dim=(2, 3))
        prob = torch.sigmoid(logits)
        inter = (prob * target * weight).sum(dim=(2, 3))
        union = ((prob + target) * weight).sum(dim=(2, 3))
        weighted_iou = 1 - (inter + 1) / (union - inter + 1)
        return (weighted_bce + weighted_iou).mean()


def _make(name: str, tversky_alpha: float, tversky_beta: float, focal_gamma: float) -> nn.Module:
    mode = smp_losses.BINARY_MODE
    makers = {
        "bce": lambda: smp_losses.SoftBCEWithLogitsLoss(),
        "dice": lambda: smp_losses.DiceLoss(mode, from_logits=True),
        "focal": lambda: smp_losses.FocalLoss(mode, gamma=focal_gamma),
        "tversky": lambda: smp_losses.TverskyLoss(mode, from_logits=True, alpha=tversky_alpha, beta=tversky_beta),
        "jaccard": lambda: smp_losses.JaccardLoss(mode, from_logits=True),
        "lovasz": lambda: smp_losses.LovaszLoss(mode, per_image=True),
        "structure": StructureLoss,
    }
    return makers[name]()


class WeightedLoss(nn.Module):
    """A weighted sum of smp losses over logits (N,1,H,W) and float masks (N,1,H,W)."""

    def __init__(self, terms: list[tuple[float, nn.Module]]):
        super().__init__()
        self.weights = [weight for weight, _ in terms]
        self.parts = nn.ModuleList(module for _, module in terms)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()  # losses in float32 even under autocast
        return sum(w * part(logits, target) for w, part in zip(self.weights, self.parts, strict=True))


def build_loss(
    spec: str, tversky_alpha: float = 0.3, tversky_beta: float = 0.7, focal_gamma: float = 2.0
) -> WeightedLoss:
    """Builds the loss named by `spec`.

    Args:
        spec: a "+"-joined list of NAME or WEIGHT*NAME terms, names from LOSS_NAMES.
        tversky_alpha: Tversky weight of false positives.
        tversky_beta: Tversky weight of false negatives.
        focal_gamma: focal loss exponent.

    Returns:
        A module mapping (logits, target) to a scalar loss.
    """
    return WeightedLoss(
        [(w, _make(name, tversky_alpha, tversky_beta, focal_gamma)) for w, name in parse_loss_spec(spec)]
    )
