"""Decodes and resizes every image once into uint8 arrays, with an optional on-disk cache."""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from polyp.data.folder import DataError, Pair, scan_pairs
from polyp.data.masks import MaskConvention, detect, read_raw_mask


@dataclass
class ImageSet:
    """Decoded images (N,S,S,3 uint8 RGB), binary masks (N,S,S uint8 0/1), stems and original sizes.

    Also what was learnt reading the folder: the data set's mask convention, whether each full-resolution
    mask has a polyp pixel, and the files operating systems leave behind that were skipped.
    """

    stems: list[str]
    images: np.ndarray
    masks: np.ndarray
    sizes: list[tuple[int, int]]  # (height, width) of each original image
    convention: MaskConvention  # of the whole data set the images come from
    has_polyp: list[bool]  # per image: its full-resolution mask has a polyp pixel
    skipped: list[str] = field(default_factory=list)  # OS files skipped in the folder, as "masks/Thumbs.db"

    def subset(self, stems: list[str]) -> ImageSet:
        """The images whose stems are listed, in that order."""
        where = {stem: i for i, stem in enumerate(self.stems)}
        index = [where[stem] for stem in stems]
        return ImageSet(list(stems), self.images[index], self.masks[index], [self.sizes[i] for i in index],
                        self.convention, [self.has_polyp[i] for i in index], list(self.skipped))

    def __len__(self) -> int:
        return len(self.stems)

    @staticmethod
    def joined(parts: dict[str, ImageSet]) -> ImageSet:
        """Several sets' images as one, each stem written "name/stem" (the first set's mask convention)."""
        sets = list(parts.values())
        return ImageSet(
            [f"{name}/{stem}" for name, part in parts.items() for stem in part.stems],
            np.concatenate([part.images for part in sets]), np.concatenate([part.masks for part in sets]),
            [size for part in sets for size in part.sizes], sets[0].convention,
            [has for part in sets for has in part.has_polyp], [item for part in sets for item in part.skipped],
        )


def read_image(path: Path) -> np.ndarray:
    """Reads an RGB image as uint8 (H,W,3); raises DataError naming the file when it cannot."""
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise DataError(f"{path}: cannot decode image (corrupt or not an image)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_mask(path: Path, convention: MaskConvention | None = None) -> np.ndarray:
    """Reads a mask as uint8 0/1 (H,W).

    Args:
        path: the mask file (8- or 16-bit, any format cv2 reads).
        convention: the data set's convention (see `polyp.data.masks`); by default it is detected from this
            one mask's largest value.
    """
    raw = read_raw_mask(path)
    return (convention or detect([int(raw.max())])).binarise(raw)


def _load_pair(pair: Pair, size: int) -> tuple[np.ndarray, np.ndarray, tuple[int, int], int] | str:
    """Resized image, raw mask resized nearest (which commutes with thresholding), size, mask's largest value."""
    try:
        image, mask = read_image(pair.image), read_raw_mask(pair.mask)
    except DataError as error:
        return str(error)
    if image.shape[:2] != mask.shape:
        return f"{pair.mask}: mask is {mask.shape[1]}x{mask.shape[0]} but image {pair.image.name} is {image.shape[1]}x{image.shape[0]}"
    small = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    small_mask = cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST)
    return small, small_mask, image.shape[:2], int(mask.max())


def content_key(pairs: list[Pair], size: int) -> str:
    """A hash of every file's bytes and the target size: the cache key."""
    digest = hashlib.sha256(f"size={size};v2".encode())
    for pair in pairs:
        for path in (pair.image, pair.mask):
            digest.update(path.name.encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:24]


def load_images(root: str | Path, size: int, cache_dir: str | Path | None = None) -> ImageSet:
    """Decodes, checks and resizes every pair in `root` once, binarising the masks by the data set's convention.

    Args:
        root: folder with `images/` and `masks/`.
        size: square side in pixels that images and masks are resized to.
        cache_dir: if given, the decoded arrays are kept there as .npz keyed by content and size.

    Returns:
        The whole data set in memory.

    Raises:
        DataError: listing every unpaired, non-image or unreadable file and every mask whose size differs
            from its image, all in one message; or when no mask has a polyp pixel.
    """
    scan = scan_pairs(root)
    problems = scan.problems
    cache_file = None
    if cache_dir is not None and not problems:
        cache_file = Path(cache_dir) / f"images-{content_key(scan.pairs, size)}.npz"
        if cache_file.exists():
            return _read_cache(cache_file, scan.skipped)
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 2) * 2)) as pool:
        results = list(pool.map(lambda pair: _load_pair(pair, size), scan.pairs))
    problems += [r for r in results if isinstance(r, str)]
    if problems:
        raise DataError(f"{root}: {len(problems)} problem(s):\n  " + "\n  ".join(problems))
    largest = [r[3] for r in results]
    check_one_convention(Path(root) / "masks", [pair.mask.name for pair in scan.pairs], largest)
    convention = detect(largest)
    if convention.largest == 0:
        raise DataError(f"{Path(root) / 'masks'}: no mask has a polyp pixel ({len(results)} masks, largest value 0); "
                        "masks should mark polyp pixels with 1, 255 or 65535 and background with 0; check the masks "
                        "folder")
    data = ImageSet(
        [p.stem for p in scan.pairs],
        np.stack([r[0] for r in results]),
        np.stack([convention.binarise(r[1]) for r in results]),
        [r[2] for r in results],
        convention,
        [value >= convention.threshold for value in largest],
        scan.skipped,
    )
    if cache_file is not None:
        _save_cache(cache_file, data)
    return data


def _kind(largest: int) -> str:
    return "0/1" if largest == 1 else "8-bit (0/255)" if largest <= 255 else "16-bit (0/65535)"


def check_one_convention(folder: Path, names: list[str], largest: list[int]) -> None:
    """Refuses masks saved in different conventions (0/1, 8-bit, 16-bit): one threshold would empty some.

    Empty masks (largest value 0) fit any convention.
    """
    kinds: dict[str, list[str]] = {}
    for name, value in zip(names, largest, strict=True):
        if value:
            kinds.setdefault(_kind(value), []).append(name)
    if len(kinds) > 1:
        found = "; ".join(f"{len(files)} {kind} (e.g. {', '.join(files[:3])})"
                          for kind, files in sorted(kinds.items(), key=lambda item: -len(item[1])))
        raise DataError(f"{folder}: masks are saved in different conventions: {found}; one threshold would read "
                        f"some of them as empty, so save them all the same way (0/1, 0/255 or 0/65535)")


def _read_cache(path: Path, skipped: list[str]) -> ImageSet:
    with np.load(path, allow_pickle=False) as cached:
        return ImageSet(
            [str(s) for s in cached["stems"]], cached["images"], cached["masks"],
            [tuple(map(int, hw)) for hw in cached["sizes"]], MaskConvention(int(cached["mask_largest"])),
            [bool(h) for h in cached["has_polyp"]], skipped,
        )


def _save_cache(path: Path, data: ImageSet) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + f".{os.getpid()}.tmp.npz")
    np.savez(partial, stems=np.array(data.stems), images=data.images, masks=data.masks,
             sizes=np.array(data.sizes, dtype=np.int64), mask_largest=np.int64(data.convention.largest),
             has_polyp=np.array(data.has_polyp, dtype=bool))
    os.replace(partial, path)
