"""Pictures a person judges a model by: the loss curve and a prediction sheet (PNG, matplotlib)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from polyp.data import ImageSet  # noqa: E402
from polyp.io import atomic_path  # noqa: E402
from polyp.metrics import dice_iou  # noqa: E402
from polyp.predict import overlay  # noqa: E402
from polyp.runtime import Normalizer  # noqa: E402


def _save(figure, path: Path) -> Path:
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=90, bbox_inches="tight", format="png")
    plt.close(figure)
    return path


def loss_curve(history: list[dict], path: str | Path, title: str = "") -> Path:
    """Plots train/val loss and val mDice per epoch into a PNG.

    Args:
        history: per-epoch dicts with epoch, train_loss, val_loss, val_mdice.
        path: the PNG to write (atomically).
        title: figure title.
    """
    figure, loss_axis = plt.subplots(figsize=(6, 3.6))
    epochs = [h["epoch"] for h in history]
    loss_axis.plot(epochs, [h["train_loss"] for h in history], "o-", label="train loss", color="tab:blue")
    loss_axis.plot(epochs, [h["val_loss"] for h in history], "s-", label="val loss", color="tab:orange")
    loss_axis.set_xlabel("epoch")
    loss_axis.set_ylabel("loss")
    dice_axis = loss_axis.twinx()
    dice_axis.plot(epochs, [h["val_mdice"] for h in history], "^-", label="val mDice", color="tab:green")
    dice_axis.set_ylabel("val mDice (per-image mean)")
    dice_axis.set_ylim(0, 1)
    lines = loss_axis.get_legend_handles_labels()[0] + dice_axis.get_legend_handles_labels()[0]
    loss_axis.legend(lines, [line.get_label() for line in lines], loc="center right", fontsize=8)
    loss_axis.set_title(title, fontsize=10)
    loss_axis.grid(alpha=0.3)
    return _save(figure, Path(path))


@torch.no_grad()
def predict_masks(model: torch.nn.Module, images: ImageSet, device: torch.device | str = "cpu") -> np.ndarray:
    """Binary masks (N,S,S uint8) of a model on already-resized images."""
    device = torch.device(device)
    model.eval()
    normalize = Normalizer(device, channels_last=False)
    logits = model(normalize(torch.from_numpy(images.images).permute(0, 3, 1, 2)))
    return (torch.sigmoid(logits.float())[:, 0] >= 0.5).cpu().numpy().astype(np.uint8)


def prediction_sheet(images: ImageSet, predictions: np.ndarray, path: str | Path, title: str = "") -> Path:
    """A grid of image | truth | prediction | overlay rows, each titled with its Dice.

    Args:
        images: the (resized) images and true masks.
        predictions: binary masks, one per image.
        path: the PNG to write (atomically).
        title: figure title.
    """
    rows = len(images)
    figure, axes = plt.subplots(rows, 4, figsize=(8, 2.1 * rows + 0.4), squeeze=False)
    for row, (stem, image, truth, pred) in enumerate(zip(images.stems, images.images, images.masks, predictions, strict=True)):
        dice, _ = dice_iou(torch.from_numpy(pred), torch.from_numpy(truth))
        panels = (image, truth * 255, pred * 255, overlay(image, pred))
        for column, (panel, name) in enumerate(zip(panels, ("image", "truth", "prediction", "overlay"), strict=True)):
            axis = axes[row][column]
            axis.imshow(panel, cmap="gray" if panel.ndim == 2 else None, vmin=0, vmax=255)
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(name, fontsize=9)
        axes[row][0].set_ylabel(f"{stem}\nDice {dice:.3f}", fontsize=8)
    figure.suptitle(title, fontsize=10)
    return _save(figure, Path(path))


def gradcam_sheet(model: torch.nn.Module, images: ImageSet, path: str | Path, title: str = "") -> Path:
    """A grid of image | prediction overlay | Grad-CAM overlay rows: what the model looks at, beside what it finds.

    Args:
        model: a segmentation model returning logits (CPU).
        images: the (resized) images, already at the model's input size.
        path: the PNG to write (atomically).
        title: figure title.
    """
    from polyp.gradcam import gradcam, heatmap_overlay

    normalize = Normalizer(torch.device("cpu"), channels_last=False)
    x = normalize(torch.from_numpy(images.images).permute(0, 3, 1, 2))
    cams = gradcam(model, x)
    predictions = predict_masks(model, images)
    rows = len(images)
    figure, axes = plt.subplots(rows, 3, figsize=(6.2, 2.1 * rows + 0.4), squeeze=False)
    for row, (stem, image, pred, cam) in enumerate(zip(images.stems, images.images, predictions, cams, strict=True)):
        panels = (image, overlay(image, pred), heatmap_overlay(image, cam))
        for column, (panel, name) in enumerate(zip(panels, ("image", "prediction", "Grad-CAM"), strict=True)):
            axis = axes[row][column]
            axis.imshow(panel)
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(name, fontsize=9)
        axes[row][0].set_ylabel(stem, fontsize=8)
    figure.suptitle(title, fontsize=10)
    return _save(figure, Path(path))
