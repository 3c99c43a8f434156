"""The trainer's batches: shuffled, augmented, prepared in worker processes where that pays.

On a CPU whose cores all train, augmenting in the main process is fastest (the model is the bottleneck);
with spare cores, or a GPU that trains faster than one process can augment, worker processes prepare the
batches (`loader_workers`, `auto` by default). Workers persist across epochs, fork from the trainer and
read the decoded uint8 arrays without a copy each (the pages are shared), and each seeds its augmentation
with the run's seed and its worker number, so a run with the same seed and worker count sees the same
batches.

Example:
    >>> from polyp.config import TrainConfig
    >>> import torch
    >>> loader_workers(TrainConfig(threads=0), torch.device("cpu"), cpu_count=2)
    0
"""

from __future__ import annotations

import os

import torch
from torch.utils.data import DataLoader, get_worker_info

from polyp.config import TrainConfig
from polyp.data import ImageSet, SegmentationDataset

AUTO = -1  # TrainConfig.loader_workers: choose by device and spare cores
MAX_AUTO_WORKERS = 8


def loader_workers(cfg: TrainConfig, device: torch.device, cpu_count: int | None = None) -> int:
    """How many worker processes prepare `cfg`'s batches on `device` (`cfg.loader_workers`, resolved if auto).

    Auto: on CUDA, every core but one (at most 8); on the CPU, half the cores that training leaves free
    (`threads` of them train, all when 0), so none where the training threads use every core.
    """
    if cfg.loader_workers != AUTO:
        return cfg.loader_workers
    cores = cpu_count or usable_cores()
    if device.type == "cuda":
        return max(1, min(MAX_AUTO_WORKERS, cores - 1))
    spare = cores - (cfg.threads or cores)
    return max(0, min(MAX_AUTO_WORKERS, spare // 2))


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, as a batch scheduler sets it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _seed_worker(worker_id: int) -> None:
    """Seeds a worker's copy of the augmentation with the run's seed and the worker's number."""
    info = get_worker_info()
    dataset: SegmentationDataset = info.dataset
    if dataset.transform is not None:
        dataset.transform.set_random_seed(dataset.seed * 1000 + worker_id + 1)


def train_loader(cfg: TrainConfig, images: ImageSet, generator: torch.Generator,
                 device: torch.device | None = None) -> DataLoader:
    """The trainer's shuffled, augmented batches of `images` for training on `device` (CPU by default)."""
    device = device or torch.device("cpu")
    workers = loader_workers(cfg, device)
    return DataLoader(
        SegmentationDataset(images, cfg.augment, seed=cfg.seed, photometric=cfg.photometric), batch_size=cfg.batch_size, shuffle=True,
        drop_last=len(images) > cfg.batch_size, generator=generator, num_workers=workers,
        persistent_workers=workers > 0, worker_init_fn=_seed_worker if workers else None,
        pin_memory=device.type == "cuda", prefetch_factor=4 if workers else None,
    )
