"""Example images the server lists once at start; clients pick them by id, never by path."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from polyp.data import DataError, read_image

EXAMPLE_SUFFIXES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png"}  # what browsers show
MAX_EXAMPLES = 48


@dataclass(frozen=True)
class Example:
    """One example image: its id in the list, the file name shown, and the server-side path."""

    id: int
    name: str
    path: Path

    @property
    def media_type(self) -> str:
        """The file's MIME type."""
        return EXAMPLE_SUFFIXES[self.path.suffix.lower()]

    def read(self) -> np.ndarray:
        """The image as RGB uint8 (H,W,3); raises DataError when the file is gone or broken."""
        return read_image(self.path)


def list_examples(folder: str | Path | None, limit: int = MAX_EXAMPLES) -> list[Example]:
    """The first `limit` JPEG/PNG files of `folder` (or of its `images/` subfolder), sorted by name.

    Args:
        folder: a folder of images or a data folder with `images/`; None for no examples.
        limit: most examples to list.

    Returns:
        Examples with ids 0, 1, ... in name order.

    Raises:
        DataError: the folder does not exist or holds no JPEG/PNG file.
    """
    if folder is None:
        return []
    folder = Path(folder)
    if (folder / "images").is_dir():
        folder = folder / "images"
    if not folder.is_dir():
        raise DataError(f"{folder}: examples folder does not exist")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in EXAMPLE_SUFFIXES)
    if not files:
        raise DataError(f"{folder}: no example images ({', '.join(EXAMPLE_SUFFIXES)}) in this folder")
    return [Example(index, path.name, path) for index, path in enumerate(files[:limit])]
