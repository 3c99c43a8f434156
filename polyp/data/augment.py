"""Training augmentation with albumentations: a geometric strength and a photometric level.

The photometric level imitates another centre's endoscope and processing (colour cast, brightness,
contrast, gamma, hue, blur, JPEG compression, CLAHE), the differences that cost a model most at a
hospital it was not trained on.
"""

from __future__ import annotations

import albumentations as A

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PHOTOMETRIC_LEVELS = ("none", "light", "strong")


def geometric_transforms(strength: str) -> list[A.BasicTransform]:
    """The geometric (and mild colour) transforms of `strength` (none|light|medium|heavy)."""
    if strength == "none":
        return []
    geometric = [A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5), A.RandomRotate90(p=0.5)]
    if strength == "light":
        return geometric
    affine = A.Affine(scale=(0.85, 1.15), translate_percent=(-0.06, 0.06), rotate=(-20, 20), p=0.5)
    colour = A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.1, hue=0.03, p=0.5)
    if strength == "medium":
        return [*geometric, affine, colour]
    if strength == "heavy":
        noise = A.GaussNoise(std_range=(0.02, 0.06), p=0.3)
        elastic = A.ElasticTransform(alpha=20, sigma=5, p=0.25)
        strong_affine = A.Affine(scale=(0.75, 1.25), translate_percent=(-0.1, 0.1), rotate=(-30, 30), p=0.7)
        return [*geometric, strong_affine, elastic, colour, noise]
    raise ValueError(f"augment: {strength!r} is not one of none, light, medium, heavy")


def photometric_transforms(level: str) -> list[A.BasicTransform]:
    """The photometric transforms of `level` (none|light|strong); they change pixels, never the mask."""
    if level == "none":
        return []
    if level not in PHOTOMETRIC_LEVELS:
        raise ValueError(f"photometric: {level!r} is not one of {', '.join(PHOTOMETRIC_LEVELS)}")
    strong = level == "strong"
    return [
        A.RandomBrightnessContrast(brightness_limit=0.3 if strong else 0.15, contrast_limit=0.3 if strong else 0.15,
                                   p=0.8 if strong else 0.5),
        A.RandomGamma(gamma_limit=(70, 150) if strong else (85, 120), p=0.5 if strong else 0.3),
        A.HueSaturationValue(hue_shift_limit=12 if strong else 6, sat_shift_limit=30 if strong else 15,
                             val_shift_limit=20 if strong else 10, p=0.6 if strong else 0.4),
        A.RGBShift(r_shift_limit=20 if strong else 10, g_shift_limit=15 if strong else 8,
                   b_shift_limit=20 if strong else 10, p=0.4 if strong else 0.2),
        A.OneOf([A.GaussianBlur(blur_limit=(3, 7), p=1.0), A.MotionBlur(blur_limit=(3, 7), p=1.0)],
                p=0.4 if strong else 0.2),
        A.ImageCompression(quality_range=(30, 90) if strong else (60, 95), p=0.5 if strong else 0.3),
        A.CLAHE(clip_limit=(1, 4), p=0.3 if strong else 0.15),
    ]


def build_augmentation(strength: str, seed: int | None = None, photometric: str = "none") -> A.Compose | None:
    """Returns the training transform for `strength` (none|light|medium|heavy) followed by the photometric
    `level` (none|light|strong), or None when both are none.

    The transforms act on uint8 images already resized to the model's input size, so they stay cheap.
    """
    transforms = geometric_transforms(strength) + photometric_transforms(photometric)
    return A.Compose(transforms, seed=seed) if transforms else None
