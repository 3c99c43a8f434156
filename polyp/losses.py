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
from segmentation_models_pytorch import losses as smp_losses
from torch import nn

LOSS_NAMES = ("bce", "dice", "focal", "tversky", "jaccard", "lovasz")
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


def _make(name: str, tversky_alpha: float, tversky_beta: float, focal_gamma: float) -> nn.Module:
    mode = smp_losses.BINARY_MODE
    makers = {
        "bce": lambda: smp_losses.SoftBCEWithLogitsLoss(),
        "dice": lambda: smp_losses.DiceLoss(mode, from_logits=True),
        "focal": lambda: smp_losses.FocalLoss(mode, gamma=focal_gamma),
        "tversky": lambda: smp_losses.TverskyLoss(mode, from_logits=True, alpha=tversky_alpha, beta=tversky_beta),
        "jaccard": lambda: smp_losses.JaccardLoss(mode, from_logits=True),
        "lovasz": lambda: smp_losses.LovaszLoss(mode, per_image=True),
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
