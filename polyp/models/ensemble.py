"""Several segmentation models as one: the mean of their probabilities, returned as a logit.

`polyp.checkpoint.save_ensemble` writes such a model as a folder of member checkpoints, and
`polyp.checkpoint.load_checkpoint` loads that folder into an `Ensemble`, so `polyp.predict`, `polyp.evaluate`,
`polyp.serve` and the ONNX export (one graph) take it like any checkpoint.

Example:
    >>> import torch
    >>> model = Ensemble([torch.nn.Conv2d(3, 1, 1), torch.nn.Conv2d(3, 1, 1)])
    >>> model(torch.zeros(1, 3, 8, 8)).shape
    torch.Size([1, 1, 8, 8])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ENSEMBLE_KEY = "ensemble"  # the training.json key that makes a checkpoint folder an ensemble
MEMBER_PREFIX = "member-"  # member-0/, member-1/, ...: one checkpoint folder per member


class Ensemble(nn.Module):
    """The members' mean probability, returned as a logit so that it replaces a single model anywhere."""

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = torch.stack([member(images).float() for member in self.members])
        # logit(mean p) = log(sum p) - log(sum (1 - p)), with log p = -softplus(-z) and log(1 - p) = -softplus(z):
        # exact where p is near 0 or 1, where sigmoid, mean and logit in float32 lose the logit (and the ONNX
        # graph's sigmoid, one ulp off, would move it by far more than the export check allows)
        return torch.logsumexp(-F.softplus(-logits), 0) - torch.logsumexp(-F.softplus(logits), 0)
