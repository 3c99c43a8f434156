"""Prediction with a checkpoint folder: masks at the original size, overlays, and Dice/IoU against truth.

Example:
    python -m polyp.predict --model runs/export/best --input photo.jpg --out predictions/
    python -m polyp.predict --model runs/export/best --input images/ --masks masks/ --out predictions/
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from polyp.checkpoint import CheckpointError, CheckpointInfo, load_checkpoint
from polyp.data import IMAGENET_MEAN, IMAGENET_STD, DataError, read_image, read_mask
from polyp.data.folder import IMAGE_SUFFIXES, MASK_NAME_SUFFIXES
from polyp.io import atomic_path
from polyp.metrics import dice_iou
from polyp.runtime import Normalizer


class Predictor:
    """Runs a loaded model on RGB uint8 images of any size and returns probability maps at that size."""

    def __init__(self, model: nn.Module, image_size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD, device: str = "cpu"):
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.image_size = image_size
        self.normalize = Normalizer(self.device, channels_last=False, mean=mean, std=std)

    @classmethod
    def from_folder(cls, folder: str | Path, device: str = "cpu") -> tuple[Predictor, CheckpointInfo]:
        """Loads a checkpoint folder (JSON + safetensors only)."""
        model, info = load_checkpoint(folder)
        return cls(model, info.image_size, info.mean, info.std, device), info

    def batch_input(self, images: list[np.ndarray]) -> torch.Tensor:
        """Resized, normalised input tensor (N,3,S,S) for RGB uint8 images."""
        size = self.image_size
        small = np.stack([cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA) for im in images])
        return self.normalize(torch.from_numpy(small).permute(0, 3, 1, 2))

    @torch.no_grad()
    def probabilities(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """Polyp probability (float32 0..1) per pixel of each image, at the image's own size."""
        probs = torch.sigmoid(self.model(self.batch_input(images)).float())[:, 0].cpu().numpy()
        return [cv2.resize(p, (im.shape[1], im.shape[0]), interpolation=cv2.INTER_LINEAR) for p, im in zip(probs, images, strict=True)]

    def mask(self, image: np.ndarray, threshold: float = 0.5) -> np.ndarray:
        """Binary mask (uint8 0/1) of one image at its own size."""
        return (self.probabilities([image])[0] >= threshold).astype(np.uint8)


def overlay(image: np.ndarray, mask: np.ndarray, colour=(0, 255, 0), alpha: float = 0.4) -> np.ndarray:
    """The image with the mask tinted in and its outline drawn (RGB uint8)."""
    out = image.copy()
    tint = np.zeros_like(image)
    tint[:] = colour
    region = mask.astype(bool)
    out[region] = (out[region] * (1 - alpha) + tint[region] * alpha).astype(np.uint8)
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(out, contours, -1, colour, max(1, round(max(image.shape[:2]) / 200)))
    return out


def write_png(path: Path, rgb_or_gray: np.ndarray) -> None:
    """Writes an RGB or greyscale uint8 array as PNG, atomically."""
    array = cv2.cvtColor(rgb_or_gray, cv2.COLOR_RGB2BGR) if rgb_or_gray.ndim == 3 else rgb_or_gray
    ok, encoded = cv2.imencode(".png", array)
    if not ok:
        raise OSError(f"{path}: could not encode PNG")
    with atomic_path(path) as temporary:
        temporary.write_bytes(encoded.tobytes())


def _inputs(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if files:
            return files
        raise DataError(f"{path}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    raise DataError(f"{path}: no such file or folder")


def _find_mask(masks: Path, stem: str) -> Path | None:
    for suffix in ("", *MASK_NAME_SUFFIXES):
        for extension in IMAGE_SUFFIXES:
            candidate = masks / f"{stem}{suffix}{extension}"
            if candidate.is_file():
                return candidate
    return None


def predict_files(predictor: Predictor, inputs: list[Path], out: Path, masks: Path | None = None) -> list[dict]:
    """Writes `<stem>_mask.png` and `<stem>_overlay.png` per input; with `masks`, scores each image."""
    rows = []
    for path in inputs:
        image = read_image(path)
        mask = predictor.mask(image)
        write_png(out / f"{path.stem}_mask.png", mask * 255)
        write_png(out / f"{path.stem}_overlay.png", overlay(image, mask))
        row = {"stem": path.stem}
        if masks is not None:
            truth_path = _find_mask(masks, path.stem)
            if truth_path is None:
                raise DataError(f"{masks}: no mask for {path.name}")
            truth = read_mask(truth_path)
            if truth.shape != mask.shape:
                raise DataError(f"{truth_path}: mask size {truth.shape[::-1]} differs from image {mask.shape[::-1]}")
            row["dice"], row["iou"] = dice_iou(torch.from_numpy(mask), torch.from_numpy(truth))
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Predict polyp masks with an exported checkpoint folder.")
    parser.add_argument("--model", required=True, help="checkpoint folder (config.json + model.safetensors + training.json)")
    parser.add_argument("--input", required=True, help="an image file or a folder of images")
    parser.add_argument("--out", required=True, help="folder for <stem>_mask.png and <stem>_overlay.png")
    parser.add_argument("--masks", help="folder of true masks: print Dice and IoU per image and their means")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--gradcam", action="store_true", help="also write <stem>_gradcam.png heat maps")
    args = parser.parse_args(argv)
    try:
        predictor, _ = Predictor.from_folder(args.model, args.device)
        inputs = _inputs(Path(args.input))
        rows = predict_files(predictor, inputs, Path(args.out), Path(args.masks) if args.masks else None)
        if args.gradcam:
            from polyp.gradcam import write_gradcams

            write_gradcams(predictor, inputs, Path(args.out))
    except (CheckpointError, DataError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for row in rows:
        scores = f"  dice {row['dice']:.4f}  iou {row['iou']:.4f}" if "dice" in row else ""
        print(f"{row['stem']}{scores}")
    if args.masks:
        print(f"mean over {len(rows)} images: mdice {np.mean([r['dice'] for r in rows]):.4f}  "
              f"miou {np.mean([r['iou'] for r in rows]):.4f}")
    print(f"wrote {(3 if args.gradcam else 2) * len(rows)} files to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
