"""An Attention U-Net: residual convolution blocks with squeeze-and-excitation, attention-gated skips.

The architecture the hand-written polyp projects were built on (Oktay et al. 2018 attention gates,
residual blocks, SE channel attention), with `encoder_depth` down-sampling stages.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class SqueezeExcite(nn.Module):
    """Channel attention: global pooling, a bottleneck MLP, a sigmoid gate per channel."""

    def __init__(self, channels: int, reduction: int = 8):
        super().__init__()
        hidden = max(4, channels // reduction)
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1), nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class ResidualBlock(nn.Module):
    """Two 3x3 conv-BN-ReLU layers with SE and a 1x1 projected shortcut."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels),
            SqueezeExcite(out_channels),
        )
        self.shortcut = (
            nn.Identity() if in_channels == out_channels
            else nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


class AttentionGate(nn.Module):
    """Weights a skip connection by how well it agrees with the coarser decoder signal."""

    def __init__(self, skip_channels: int, gate_channels: int):
        super().__init__()
        inter = max(8, skip_channels // 2)
        self.skip = nn.Conv2d(skip_channels, inter, 1, bias=False)
        self.gate = nn.Conv2d(gate_channels, inter, 1, bias=True)
        self.psi = nn.Sequential(nn.ReLU(inplace=True), nn.Conv2d(inter, 1, 1), nn.Sigmoid())

    def forward(self, skip: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        return skip * self.psi(self.skip(skip) + self.gate(gate))


class AttentionUNet(nn.Module):
    """Attention U-Net for binary segmentation; returns logits (N, classes, H, W).

    Args:
        encoder_depth: number of 2x down-sampling stages (3..5).
        in_channels: image channels.
        classes: output channels.
        base_channels: channels of the first stage; each stage doubles them (capped at 512).
    """

    def __init__(self, encoder_depth: int = 5, in_channels: int = 3, classes: int = 1, base_channels: int = 16):
        super().__init__()
        self.config = {"encoder_depth": encoder_depth, "in_channels": in_channels, "classes": classes,
                       "base_channels": base_channels}
        widths = [min(512, base_channels * 2**i) for i in range(encoder_depth + 1)]
        self.encoder = nn.ModuleList(
            [ResidualBlock(in_channels, widths[0])]
            + [ResidualBlock(widths[i - 1], widths[i]) for i in range(1, len(widths))]
        )
        self.gates = nn.ModuleList(AttentionGate(widths[i], widths[i + 1]) for i in range(encoder_depth))
        self.decoder = nn.ModuleList(ResidualBlock(widths[i] + widths[i + 1], widths[i]) for i in range(encoder_depth))
        self.head = nn.Conv2d(widths[0], classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for index, block in enumerate(self.encoder):
            x = block(x if index == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        x = skips.pop()
        for level in reversed(range(len(self.decoder))):
            skip = skips[level]
            up = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = self.decoder[level](torch.cat([self.gates[level](skip, up), up], dim=1))
        return self.head(x)
