"""Test-time augmentation: average a model's probabilities over flips (and 90° rotations) of each image.

`flip` averages the image as it is with its horizontal and vertical flips (3 passes); `d4` over the 8
symmetries of the square (4 rotations, each also mirrored). Each prediction is turned back before averaging,
so the result is at the image's own orientation and size.

Example:
    >>> import numpy as np
    >>> image = np.arange(6).reshape(2, 3)
    >>> all(np.array_equal(back(turn(image)), image) for turn, back in symmetries("d4"))
    True
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

TTA_MODES = ("none", "flip", "d4")
Symmetry = tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]  # (forward, inverse)


def _rotation(quarter_turns: int, mirrored: bool) -> Symmetry:
    def forward(array: np.ndarray) -> np.ndarray:
        turned = np.rot90(array, quarter_turns, axes=(0, 1))
        return np.ascontiguousarray(turned[:, ::-1] if mirrored else turned)

    def inverse(array: np.ndarray) -> np.ndarray:
        unmirrored = array[:, ::-1] if mirrored else array
        return np.ascontiguousarray(np.rot90(unmirrored, -quarter_turns, axes=(0, 1)))

    return forward, inverse


def symmetries(mode: str) -> list[Symmetry]:
    """The (forward, inverse) pairs of a TTA mode, the identity first.

    Raises:
        ValueError: an unknown mode (callers check `TTA_MODES` first).
    """
    if mode == "none":
        return [_rotation(0, False)]
    if mode == "flip":
        vertical = (lambda a: np.ascontiguousarray(a[::-1]), lambda a: np.ascontiguousarray(a[::-1]))
        return [_rotation(0, False), _rotation(0, True), vertical]
    if mode == "d4":
        return [_rotation(turns, mirrored) for turns in range(4) for mirrored in (False, True)]
    raise ValueError(f"tta: {mode!r} is not one of {', '.join(TTA_MODES)}")
