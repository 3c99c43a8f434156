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
from torch import nn

ENSEMBLE_KEY = "ensemble"  # the training.json key that makes a checkpoint folder an ensemble
MEMBER_PREFIX = "member-"  # member-0/, member-1/, ...: one checkpoint folder per member
PROBABILITY_EPS = 1e-6  # the mean probability is clamped to [eps, 1 - eps] before it is turned back into a logit


class Ensemble(nn.Module):
    """The members' mean probability, returned as a logit so that it replaces a single model anywhere."""

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        probabilities = torch.stack([torch.sigmoid(member(images).float()) for member in self.members]).mean(0)
        return torch.logit(probabilities, eps=PROBABILITY_EPS)
