"""Finds image/mask pairs in a Kvasir-SEG, CVC-ClinicDB or PolypGen style folder, checking all at once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from polyp.errors import PolypError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")
MASK_NAME_SUFFIXES = ("_mask", "_segmentation")
LAYOUTS = (  # image and mask folders of a data set, in the order they are looked for
    ("images", "masks"),  # Kvasir-SEG, PolypGen, PraNet's test sets
    ("image", "mask"),  # PraNet's training set
    ("Original", "Ground Truth"),  # CVC-ClinicDB as distributed (TIFF)
)
OS_LEFTOVERS = ("thumbs.db", "desktop.ini", ".ds_store")  # lower-case names Windows and macOS write into folders


class DataError(PolypError):
    """A data folder that cannot be used; the message names every offending file."""


@dataclass(frozen=True)
class Pair:
    """One image and its mask."""

    stem: str
    image: Path
    mask: Path


@dataclass
class FolderScan:
    """What `scan_pairs` found in a data folder."""

    pairs: list[Pair]  # sorted by stem
    problems: list[str]  # one line per unpaired, duplicate or non-image file
    skipped: list[str]  # files operating systems leave behind, as "images/Thumbs.db"


def is_os_leftover(name: str) -> bool:
    """True for Thumbs.db, desktop.ini, .DS_Store (any case) and macOS AppleDouble `._*` files."""
    return name.lower() in OS_LEFTOVERS or name.startswith("._")


def _mask_stem(stem: str) -> str:
    for suffix in MASK_NAME_SUFFIXES:
        if stem.endswith(suffix):
            return stem[: -len(suffix)]
    return stem


def _index(folder: Path, problems: list[str], skipped: list[str], strip: bool) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if is_os_leftover(path.name) and path.is_file():
            skipped.append(f"{folder.name}/{path.name}")
            continue
        if path.name.startswith(".") or path.is_dir():
            continue
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            problems.append(f"{path}: not an image file (expected {', '.join(IMAGE_SUFFIXES)})")
            continue
        stem = _mask_stem(path.stem) if strip else path.stem
        if stem in found:
            problems.append(f"{path}: same stem {stem!r} as {found[stem].name}")
            continue
        found[stem] = path
    return found


def find_pairs(root: str | Path) -> list[Pair]:
    """Pairs `root/images/*` with `root/masks/*` by file stem.

    Masks may be named like their image or `<stem>_mask.*` / `<stem>_segmentation.*`, in any of
    IMAGE_SUFFIXES. Every problem (missing folder, unpaired file, non-image file) is collected and
    reported in one DataError. Hidden files and the files operating systems leave behind (Thumbs.db,
    desktop.ini, .DS_Store, `._*`) are skipped.

    Args:
        root: the data folder holding `images/` and `masks/`.

    Returns:
        The pairs, sorted by stem.
    """
    scan = scan_pairs(root)
    if scan.problems:
        raise DataError(f"{root}: {len(scan.problems)} problem(s):\n  " + "\n  ".join(scan.problems))
    return scan.pairs


def find_layout(root: Path) -> tuple[Path, Path] | None:
    """The image and mask folders of a data folder in the first layout of LAYOUTS it has, or None."""
    for images, masks in LAYOUTS:
        if (root / images).is_dir() and (root / masks).is_dir():
            return root / images, root / masks
    return None


def layout(root: Path) -> tuple[Path, Path]:
    """The image and mask folders of a data folder, in the first layout of LAYOUTS it has.

    Raises:
        DataError: none of the layouts is there, naming what was expected.
    """
    if found := find_layout(root):
        return found
    if (root / "images").is_dir() or (root / "masks").is_dir():
        missing = [name for name in ("images", "masks") if not (root / name).is_dir()]
        raise DataError(f"{root}: missing sub-folder(s) {', '.join(missing)}; expected images/ and masks/")
    expected = ", ".join(f"{images}/ + {masks}/" for images, masks in LAYOUTS)
    raise DataError(f"{root}: missing sub-folder(s) images, masks; expected one of {expected}")


def scan_pairs(root: str | Path) -> FolderScan:
    """Like `find_pairs`, but returns the pairs, the problems and the skipped OS files instead of raising.

    Raises:
        DataError: only when `root`, `images/` or `masks/` is missing or both are empty.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: data folder does not exist")
    image_dir, mask_dir = layout(root)
    problems: list[str] = []
    skipped: list[str] = []
    images = _index(image_dir, problems, skipped, strip=False)
    masks = _index(mask_dir, problems, skipped, strip=True)
    if not images and not masks and not problems:
        raise DataError(f"{root}: {image_dir.name}/ and {mask_dir.name}/ are empty")
    for stem in sorted(set(images) - set(masks)):
        problems.append(f"{images[stem]}: no mask in {mask_dir}")
    for stem in sorted(set(masks) - set(images)):
        problems.append(f"{masks[stem]}: no image in {image_dir}")
    pairs = [Pair(stem, images[stem], masks[stem]) for stem in sorted(set(images) & set(masks))]
    return FolderScan(pairs, problems, skipped)
