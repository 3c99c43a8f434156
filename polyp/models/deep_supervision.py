"""UNet++ with deep supervision, built on segmentation-models-pytorch's `UnetPlusPlus`.

UNet++ (Zhou et al., 2018) supervises every node of its top row: the nested decoder's nodes at the finest
skip, X0,1 ... X0,n, each one more nesting level deep. smp's `UnetPlusPlus` computes those nodes (its
decoder blocks `x_{i}_{depth-2}`) but returns only the last path. This class keeps smp's encoder, decoder
and segmentation head unchanged, adds a 1x1 convolution on each of the other top-row nodes, and in
training returns every head's logits upsampled to the input size, shallowest first and smp's own output
last: a tensor (heads, N, classes, H, W) whose mean loss the trainer minimises. In eval mode (prediction,
ONNX export) it returns smp's output alone, the last head, so a checkpoint predicts exactly like a plain
UNet++ of the same weights.

Example:
    >>> import torch
    >>> model = DeepSupervisedUnetPlusPlus(encoder_name="resnet18", encoder_depth=3, encoder_weights=None,
    ...                                    classes=1, decoder_channels=[64, 32, 16])
    >>> tuple(model.train()(torch.zeros(2, 3, 32, 32)).shape)
    (2, 2, 1, 32, 32)
    >>> tuple(model.eval()(torch.zeros(2, 3, 32, 32)).shape)
    (2, 1, 32, 32)
"""

from __future__ import annotations

import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from torch import nn

KEPT = "deep_supervision_output"  # attribute of a supervised decoder block holding its last training output


def _keep_training_output(block: nn.Module, inputs, output: torch.Tensor) -> None:
    """Forward hook of a supervised top-row node: keeps its output for the head (in training only)."""
    if block.training:
        block.__dict__[KEPT] = output


class DeepSupervisedUnetPlusPlus(smp.UnetPlusPlus):
    """smp's UnetPlusPlus with a 1x1 head on each earlier top-row node; takes UnetPlusPlus's arguments."""

    saved_as = "UnetPlusPlus"  # the class `config.json` names: smp.from_pretrained builds the plain model

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        top = self.decoder.depth - 1  # smp's index of the finest skip's column
        self.supervised_nodes = [f"x_{nesting}_{top}" for nesting in range(top, 0, -1)]  # X0,1 .. X0,n-1
        classes = self.segmentation_head[0].out_channels
        self.deep_heads = nn.ModuleList(
            nn.Conv2d(self.decoder.blocks[node].out_channels, classes, kernel_size=1) for node in self.supervised_nodes
        )
        for node in self.supervised_nodes:  # a plain function: copies of the model (deepcopy) keep working
            self.decoder.blocks[node].register_forward_hook(_keep_training_output)

    @property
    def heads(self) -> int:
        """How many outputs training supervises: the extra heads and smp's own output."""
        return len(self.deep_heads) + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(heads, N, classes, H, W) logits in training, smp's (N, classes, H, W) otherwise."""
        logits = super().forward(x)
        if not self.training:
            return logits
        size = logits.shape[-2:]
        nodes = [self.decoder.blocks[node].__dict__.pop(KEPT) for node in self.supervised_nodes]
        extra = [F.interpolate(head(node), size=size, mode="bilinear", align_corners=False)
                 for node, head in zip(nodes, self.deep_heads, strict=True)]
        return torch.stack([*(e.to(logits.dtype) for e in extra), logits])
