"""A seeded synthetic polyp data set in the Kvasir-SEG layout, for tests and demos.

Images look like colonoscopy frames (pink-red textured mucosa, dark vignette, specular highlights)
with 0 to 2 polyps of varied size and shape; masks are exact.

Example:
    python -m polyp.data.synthetic --out /tmp/synthetic --count 40 --size 64
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import cv2
import numpy as np

from polyp.errors import PolypError
from polyp.images import write_image
from polyp.io import make_folder


def _smooth_noise(rng: np.random.Generator, size: int, scale: int) -> np.ndarray:
    coarse = rng.standard_normal((max(2, size // scale), max(2, size // scale))).astype(np.float32)
    return cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)


def _polyp_mask(rng: np.random.Generator, size: int) -> tuple[np.ndarray, tuple[float, float, float]]:
    radius = rng.uniform(0.08, 0.25) * size
    cy, cx = rng.uniform(radius, size - radius, size=2)
    angles = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    wobble = 1 + 0.18 * np.sin(angles * rng.integers(2, 5) + rng.uniform(0, 6)) + rng.normal(0, 0.04, angles.size)
    stretch = rng.uniform(0.7, 1.3)
    xs = cx + radius * wobble * np.cos(angles) * stretch
    ys = cy + radius * wobble * np.sin(angles) / stretch
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [np.stack([xs, ys], 1).round().astype(np.int32)], 1)
    return mask, (cy, cx, radius)


def make_sample(seed: int, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Returns one RGB image (size,size,3 uint8) and its 0/1 mask (size,size uint8) for `seed`."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    texture = _smooth_noise(rng, size, 8) * 0.6 + _smooth_noise(rng, size, 3) * 0.4
    base = np.array([205, 95, 90], np.float32) * rng.uniform(0.85, 1.1)
    image = base[None, None, :] * (1 + 0.08 * texture[..., None])
    folds = np.sin((xx * rng.uniform(3, 7) + yy * rng.uniform(1, 4)) * np.pi + rng.uniform(0, 6))
    image *= (1 - 0.07 * folds)[..., None]
    mask = np.zeros((size, size), np.uint8)
    for _ in range(rng.choice([0, 1, 1, 1, 2], 1)[0]):
        blob, (cy, cx, radius) = _polyp_mask(rng, size)
        dist = np.sqrt((yy * size - cy) ** 2 + (xx * size - cx) ** 2) / radius
        dome = np.clip(1.25 - dist, 0, 1.25)  # lit centre, darker rim
        colour = np.array([235, 130, 110], np.float32) * rng.uniform(0.9, 1.05)
        polyp = colour[None, None, :] * (0.75 + 0.3 * dome[..., None]) * (1 + 0.04 * texture[..., None])
        image = np.where(blob[..., None] > 0, polyp, image)
        rim = cv2.morphologyEx(blob, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
        image[rim > 0] *= 0.8
        mask |= blob
    vignette = 1 - 0.75 * np.clip(np.sqrt((xx - 0.5) ** 2 + (yy - 0.5) ** 2) / 0.72, 0, 1) ** 2
    image *= vignette[..., None]
    for _ in range(rng.integers(1, 5)):
        y, x = rng.uniform(0.15, 0.85, size=2) * size
        spot = np.exp(-(((yy * size - y) ** 2 + (xx * size - x) ** 2) / (2 * rng.uniform(0.4, 1.5) ** 2)))
        image += 255 * spot[..., None]
    image += rng.normal(0, 3, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), mask


def write_synthetic(out: str | Path, count: int = 40, size: int = 64, seed: int = 0) -> Path:
    """Writes `count` images (`images/synth_XXXX.jpg`) and exact masks (`masks/synth_XXXX.png`).

    Args:
        out: the folder to create (Kvasir-SEG layout).
        count: number of image/mask pairs.
        size: side of the square images in pixels.
        seed: the data set's seed; the same arguments always give the same files.

    Returns:
        `out` as a Path.
    """
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    for index in range(count):
        image, mask = make_sample(seed * 1_000_003 + index, size)
        stem = f"synth_{index:04d}"
        write_image(out / "images" / f"{stem}.jpg", image)
        write_image(out / "masks" / f"{stem}.png", mask * 255)
    return out


def synthetic_folder(cache_root: str | Path, count: int = 40, size: int = 64, seed: int = 0) -> Path:
    """The folder of the synthetic set with these arguments under `cache_root`, written if missing."""
    key = hashlib.sha256(f"{count}-{size}-{seed}-v1".encode()).hexdigest()[:10]
    folder = Path(cache_root) / f"synthetic-{count}x{size}-s{seed}-{key}"
    if not (folder / ".complete").exists():
        write_synthetic(folder, count, size, seed)
        (folder / ".complete").touch()
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder to write images/ and masks/ into")
    parser.add_argument("--count", type=int, default=40, help="number of images")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        make_folder(args.out, "--out")
    except PolypError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    folder = write_synthetic(args.out, args.count, args.size, args.seed)
    print(f"wrote {args.count} synthetic images and masks to {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
