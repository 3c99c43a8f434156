"""Grad-CAM for segmentation: which regions of the deepest encoder features drive the polyp score."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from polyp.data import read_image
from polyp.images import write_image
from polyp.models.ensemble import Ensemble


def target_layer(model: nn.Module) -> nn.Module:
    """The module whose activations Grad-CAM explains: the encoder's deepest stage."""
    encoder = getattr(model, "encoder", None)
    if isinstance(encoder, nn.ModuleList):  # our AttentionUNet: its encoder blocks
        return encoder[-1]
    if encoder is not None:
        return encoder
    raise ValueError(f"{type(model).__name__}: no encoder to explain with Grad-CAM")


def gradcam(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    """Grad-CAM maps (N,H,W floats in 0..1) for the summed polyp probability of each input image.

    Args:
        model: a segmentation model returning logits (N,1,H,W).
        x: normalised input (N,3,H,W).
    """
    if isinstance(model, Ensemble):  # each member's map, averaged: where the members look together
        return np.mean([gradcam(member, x) for member in model.members], axis=0)
    store: dict[str, torch.Tensor] = {}

    def hook(_module, _inputs, output):
        feature = output[-1] if isinstance(output, (list, tuple)) else output
        feature.retain_grad()
        store["feature"] = feature

    handle = target_layer(model).register_forward_hook(hook)
    try:
        model.eval()
        with torch.enable_grad():
            logits = model(x.detach().requires_grad_(False))
            torch.sigmoid(logits).sum().backward()
    finally:
        handle.remove()
    feature = store["feature"]
    weights = feature.grad.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * feature).sum(dim=1)).detach()
    cam = torch.nn.functional.interpolate(cam[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    peak = cam.flatten(1).amax(dim=1).clamp_min(1e-8)
    return (cam / peak[:, None, None]).cpu().numpy()


def heatmap_overlay(image: np.ndarray, cam: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The RGB image with the Grad-CAM map (resized to it) blended in as a JET colour map."""
    cam = cv2.resize(cam.astype(np.float32), (image.shape[1], image.shape[0]))
    colour = cv2.cvtColor(cv2.applyColorMap((cam * 255).astype(np.uint8), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    return (image * (1 - alpha) + colour * alpha).astype(np.uint8)


def gradcam_image(predictor, image: np.ndarray) -> np.ndarray:
    """Grad-CAM overlay (RGB uint8, the image's size) of one image for a `polyp.predict.Predictor`."""
    cam = gradcam(predictor.model, predictor.batch_input([image]))[0]
    return heatmap_overlay(image, cam)


def write_gradcams(predictor, inputs: list[Path], out: Path) -> list[Path]:
    """Writes `<stem>_gradcam.png` for each input image; returns the paths."""
    return [write_image(out / f"{path.stem}_gradcam.png", gradcam_image(predictor, read_image(path)))
            for path in inputs]
