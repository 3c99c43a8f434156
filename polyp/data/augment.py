"""Training augmentation with albumentations at a named strength."""

from __future__ import annotations

import albumentations as A

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def build_augmentation(strength: str, seed: int | None = None) -> A.Compose | None:
    """Returns the training transform for `strength` (none|light|medium|heavy), or None for none.

    The transforms act on uint8 images already resized to the model's input size, so they stay cheap.
    """
    if strength == "none":
        return None
    geometric = [A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5), A.RandomRotate90(p=0.5)]
    if strength == "light":
        return A.Compose(geometric, seed=seed)
    affine = A.Affine(scale=(0.85, 1.15), translate_percent=(-0.06, 0.06), rotate=(-20, 20), p=0.5)
    colour = A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.1, hue=0.03, p=0.5)
    if strength == "medium":
        return A.Compose([*geometric, affine, colour], seed=seed)
    if strength == "heavy":
        noise = A.GaussNoise(std_range=(0.02, 0.06), p=0.3)
        elastic = A.ElasticTransform(alpha=20, sigma=5, p=0.25)
        strong_affine = A.Affine(scale=(0.75, 1.25), translate_percent=(-0.1, 0.1), rotate=(-30, 30), p=0.7)
        return A.Compose([*geometric, strong_affine, elastic, colour, noise], seed=seed)
    raise ValueError(f"augment: {strength!r} is not one of none, light, medium, heavy")
