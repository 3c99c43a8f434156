"""Pictures a person judges a model by: the loss curve (matplotlib) and prediction sheets (OpenCV), as PNG."""

from __future__ import annotations

from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from polyp.data import IMAGENET_MEAN, IMAGENET_STD, ImageSet  # noqa: E402
from polyp.gradcam import gradcam, heatmap_overlay  # noqa: E402
from polyp.images import binary_mask, overlay, write_image  # noqa: E402
from polyp.io import atomic_path  # noqa: E402
from polyp.metrics import dice_iou  # noqa: E402
from polyp.predict import Predictor  # noqa: E402


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


Normalization = tuple[tuple[float, float, float], tuple[float, float, float]]  # (mean, std) of RGB / 255


def _plain_predictor(model: torch.nn.Module, images: ImageSet, normalization: Normalization,
                     device: torch.device | str = "cpu") -> Predictor:
    """A plain float32 Predictor of `model` at the size of the already-resized `images`."""
    mean, std = normalization
    return Predictor(model, images.images.shape[1], mean, std, device=str(device), precision="fp32",
                     channels_last=False)


def predict_masks(model: torch.nn.Module, images: ImageSet, normalization: Normalization = (IMAGENET_MEAN, IMAGENET_STD),
                  device: torch.device | str = "cpu") -> np.ndarray:
    """Binary masks (N,S,S uint8) of a model on already-resized images, in plain float32.

    Args:
        normalization: the (mean, std) the model expects (`polyp.models.input_normalization`, or a checkpoint's).
    """
    return _masks(_plain_predictor(model, images, normalization, device), images)


def _masks(predictor: Predictor, images: ImageSet) -> np.ndarray:
    return np.stack([binary_mask(probability) for probability in predictor.probabilities(list(images.images))])


TILE = 160  # pixels of each panel on a sheet
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _label(width: int, text: str, height: int = 22, scale: float = 0.45) -> np.ndarray:
    strip = np.full((height, width, 3), 255, np.uint8)
    cv2.putText(strip, text, (4, height - 7), _FONT, scale, (20, 20, 20), 1, cv2.LINE_AA)
    return strip


def _rgb(panel: np.ndarray) -> np.ndarray:
    panel = panel if panel.ndim == 3 else np.repeat(panel[..., None], 3, axis=2)
    return cv2.resize(panel.astype(np.uint8), (TILE, TILE), interpolation=cv2.INTER_NEAREST)


def sheet(rows: list[tuple[str, list[np.ndarray]]], columns: list[str], title: str) -> np.ndarray:
    """A picture of labelled rows of equal-sized panels (RGB uint8), drawn with OpenCV: fast enough for every trial.

    Args:
        rows: (row label, panels) pairs; panels are RGB or greyscale uint8 arrays.
        columns: the column names written above the first row.
        title: a line above everything.
    """
    gap = np.full((TILE, 4, 3), 255, np.uint8)
    width = len(columns) * (TILE + 4)
    header = np.hstack([_label(TILE + 4, name) for name in columns])
    body = []
    for label, panels in rows:
        body += [_label(width, label, 18, 0.4), np.hstack([part for panel in panels for part in (_rgb(panel), gap)])]
    return np.vstack([_label(width, title, 26, 0.5), header, *body])


def prediction_sheet(images: ImageSet, predictions: np.ndarray, path: str | Path, title: str = "") -> Path:
    """Rows of image | truth | prediction | overlay, each labelled with the image's stem and Dice, as a PNG.

    Args:
        images: the (resized) images and true masks.
        predictions: binary masks, one per image.
        path: the PNG to write (atomically).
        title: a line above the sheet.
    """
    rows = []
    for stem, image, truth, pred in zip(images.stems, images.images, images.masks, predictions, strict=True):
        dice, _ = dice_iou(torch.from_numpy(pred), torch.from_numpy(truth))
        rows.append((f"{stem}   Dice {dice:.3f}", [image, truth * 255, pred * 255, overlay(image, pred)]))
    return write_image(path, sheet(rows, ["image", "truth", "prediction", "overlay"], title))


def gradcam_sheet(model: torch.nn.Module, images: ImageSet, path: str | Path, title: str = "",
                  normalization: Normalization = (IMAGENET_MEAN, IMAGENET_STD)) -> Path:
    """A grid of image | prediction overlay | Grad-CAM overlay rows: what the model looks at, beside what it finds.

    Args:
        model: a segmentation model returning logits (CPU).
        images: the (resized) images, already at the model's input size.
        path: the PNG to write (atomically).
        title: figure title.
        normalization: the (mean, std) the model expects.
    """
    predictor = _plain_predictor(model, images, normalization)
    cams = gradcam(predictor.model, predictor.batch_input(list(images.images)))
    predictions = _masks(predictor, images)
    rows = [(stem, [image, overlay(image, pred), heatmap_overlay(image, cam)])
            for stem, image, pred, cam in zip(images.stems, images.images, predictions, cams, strict=True)]
    return write_image(path, sheet(rows, ["image", "prediction", "Grad-CAM"], title))


def reliability_plot(sets: dict[str, tuple[list[dict], float]], path: str | Path) -> Path:
    """Observed polyp frequency against mean predicted probability per bin, a line per set with its ECE, and the
    diagonal of a calibrated model (the rows and ECE of `polyp.evaluate.calibration.Reliability`)."""
    figure, axis = plt.subplots(figsize=(4.8, 4.2))
    axis.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="calibrated")
    for name, (rows, ece) in sets.items():
        points = [(row["mean_probability"], row["polyp_frequency"]) for row in rows if row["pixels"]]
        if points:
            axis.plot(*zip(*points, strict=True), marker="o", label=f"{name} (ECE {ece:.3f})")
    axis.set_xlabel("predicted polyp probability (bin mean)")
    axis.set_ylabel("share of those pixels that are polyp")
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1)
    axis.legend(fontsize=7, loc="upper left")
    axis.set_title("Reliability (every pixel, 10 bins)", fontsize=9)
    return _save(figure, Path(path))
