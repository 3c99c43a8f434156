"""Decodes and resizes every image once into uint8 arrays, with an optional on-disk cache."""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from polyp.data.folder import DataError, Pair, scan_pairs

MASK_THRESHOLD = 128  # Kvasir masks are JPEGs: binarise the noisy values at mid-grey


@dataclass
class ImageSet:
    """Decoded images (N,S,S,3 uint8 RGB), binary masks (N,S,S uint8 0/1), stems and original sizes."""

    stems: list[str]
    images: np.ndarray
    masks: np.ndarray
    sizes: list[tuple[int, int]]  # (height, width) of each original image

    def subset(self, stems: list[str]) -> ImageSet:
        """The images whose stems are listed, in that order."""
        where = {stem: i for i, stem in enumerate(self.stems)}
        index = [where[stem] for stem in stems]
        return ImageSet(list(stems), self.images[index], self.masks[index], [self.sizes[i] for i in index])

    def __len__(self) -> int:
        return len(self.stems)


def read_image(path: Path) -> np.ndarray:
    """Reads an RGB image as uint8 (H,W,3); raises DataError naming the file when it cannot."""
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise DataError(f"{path}: cannot decode image (corrupt or not an image)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_mask(path: Path) -> np.ndarray:
    """Reads a mask as uint8 0/1 (H,W), binarised at MASK_THRESHOLD."""
    data = np.fromfile(str(path), dtype=np.uint8)
    mask = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE) if data.size else None
    if mask is None:
        raise DataError(f"{path}: cannot decode mask (corrupt or not an image)")
    return (mask >= MASK_THRESHOLD).astype(np.uint8)


def _load_pair(pair: Pair, size: int) -> tuple[np.ndarray, np.ndarray, tuple[int, int]] | str:
    try:
        image, mask = read_image(pair.image), read_mask(pair.mask)
    except DataError as error:
        return str(error)
    if image.shape[:2] != mask.shape:
        return f"{pair.mask}: mask is {mask.shape[1]}x{mask.shape[0]} but image {pair.image.name} is {image.shape[1]}x{image.shape[0]}"
    small = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    small_mask = cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST)
    return small, small_mask, image.shape[:2]


def content_key(pairs: list[Pair], size: int) -> str:
    """A hash of every file's bytes and the target size: the cache key."""
    digest = hashlib.sha256(f"size={size};v1".encode())
    for pair in pairs:
        for path in (pair.image, pair.mask):
            digest.update(path.name.encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:24]


def load_images(root: str | Path, size: int, cache_dir: str | Path | None = None) -> ImageSet:
    """Decodes, checks and resizes every pair in `root` once.

    Args:
        root: folder with `images/` and `masks/`.
        size: square side in pixels that images and masks are resized to.
        cache_dir: if given, the decoded arrays are kept there as .npz keyed by content and size.

    Returns:
        The whole data set in memory.

    Raises:
        DataError: listing every unpaired, non-image or unreadable file and every mask whose size differs
            from its image, all in one message.
    """
    pairs, problems = scan_pairs(root)
    cache_file = None
    if cache_dir is not None and not problems:
        cache_file = Path(cache_dir) / f"images-{content_key(pairs, size)}.npz"
        if cache_file.exists():
            with np.load(cache_file, allow_pickle=False) as cached:
                return ImageSet(
                    [str(s) for s in cached["stems"]], cached["images"], cached["masks"],
                    [tuple(map(int, hw)) for hw in cached["sizes"]],
                )
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 2) * 2)) as pool:
        results = list(pool.map(lambda pair: _load_pair(pair, size), pairs))
    problems += [r for r in results if isinstance(r, str)]
    if problems:
        raise DataError(f"{root}: {len(problems)} problem(s):\n  " + "\n  ".join(problems))
    data = ImageSet(
        [p.stem for p in pairs],
        np.stack([r[0] for r in results]),
        np.stack([r[1] for r in results]),
        [r[2] for r in results],
    )
    if cache_file is not None:
        _save_cache(cache_file, data)
    return data


def _save_cache(path: Path, data: ImageSet) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + f".{os.getpid()}.tmp.npz")
    np.savez(partial, stems=np.array(data.stems), images=data.images, masks=data.masks,
             sizes=np.array(data.sizes, dtype=np.int64))
    os.replace(partial, path)
