"""A torch Dataset over in-memory uint8 arrays; augmentation is applied per item, normalisation per batch."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from polyp.data.augment import build_augmentation
from polyp.data.loading import ImageSet


class SegmentationDataset(Dataset):
    """Yields (image uint8 3xSxS, mask float 1xSxS) pairs, augmented when `augment` or `photometric` is not "none"."""

    def __init__(self, images: ImageSet, augment: str = "none", seed: int | None = None, photometric: str = "none"):
        self.images, self.seed = images, seed or 0
        self.transform = build_augmentation(augment, seed, photometric)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.images.images[index], self.images.masks[index]
        if self.transform is not None:
            out = self.transform(image=image, mask=mask)
            image, mask = out["image"], out["mask"]
        image = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
        mask = torch.from_numpy(np.ascontiguousarray(mask))[None].float()
        return image, mask
