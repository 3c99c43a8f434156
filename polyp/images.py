"""Image helpers shared by prediction, plots, Grad-CAM, the server and the synthetic data: the mask of a
probability map, the overlay a person looks at, and image encoding and writing.

Example:
    >>> import numpy as np
    >>> from polyp.images import binary_mask, encode_image, overlay
    >>> mask = binary_mask(np.array([[0.2, 0.7]], np.float32))
    >>> mask.tolist()
    [[0, 1]]
    >>> encode_image(overlay(np.zeros((1, 2, 3), np.uint8), mask))[:4]
    b'\\x89PNG'
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from polyp.io import atomic_path

MASK_THRESHOLD = 0.5  # probability at and above which a pixel counts as polyp
JPEG_QUALITY = 95  # OpenCV's JPEG quality (0-100) of written .jpg files


def binary_mask(probability: np.ndarray, threshold: float = MASK_THRESHOLD) -> np.ndarray:
    """uint8 0/1 mask of a probability map (any shape): 1 where the probability is at least `threshold`."""
    return (probability >= threshold).astype(np.uint8)


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


def encode_image(rgb_or_gray: np.ndarray, suffix: str = ".png") -> bytes:
    """The bytes of an RGB or greyscale uint8 array in the format of `suffix` (.png, or .jpg at JPEG_QUALITY)."""
    array = cv2.cvtColor(rgb_or_gray, cv2.COLOR_RGB2BGR) if rgb_or_gray.ndim == 3 else rgb_or_gray
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if suffix.lower() in (".jpg", ".jpeg") else []
    ok, encoded = cv2.imencode(suffix, array, params)
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {suffix} image of shape {rgb_or_gray.shape}")
    return encoded.tobytes()


def write_image(path: str | Path, rgb_or_gray: np.ndarray) -> Path:
    """Writes an RGB or greyscale uint8 array to `path` (format from its suffix), atomically; returns the path."""
    path = Path(path)
    encoded = encode_image(rgb_or_gray, path.suffix)
    with atomic_path(path) as temporary:
        temporary.write_bytes(encoded)
    return path
