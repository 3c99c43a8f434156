"""How long one training step of each candidate model takes on this machine, per image, at each candidate size.

Timed as `polyp.bench` times the trainer's step (`polyp.train.loop.TrainStep` on a random batch: one warm-up
step, then the fastest of a few), and kept in `$POLYP_CACHE/step-times.json` under the machine, the threads,
the PyTorch version and the model, so a second plan (a resumed run) times nothing again.

Every candidate (architecture x encoder of the space) is timed at the first stage's size; the slowest of them
is also timed at every larger candidate size, and the others are scaled by its ratio (step time grows with
the pixels alike for these convolutional models; timing all of them at 352 px would cost minutes).
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from polyp.bench import random_batch
from polyp.config import TrainConfig
from polyp.data import default_cache_dir
from polyp.io import write_json
from polyp.models import build_model
from polyp.runtime import resolve_device
from polyp.train.loop import TrainStep

CACHE_FILE = "step-times.json"
TIMED_STEPS = 3  # after one warm-up step; the fastest counts
SCHEDULE_STEPS = 100_000  # steps per epoch given to the schedule while timing (one-cycle never runs out)
Timer = Callable[[TrainConfig], float]  # seconds per image of one training step of a config


@dataclass(frozen=True)
class StepTimes:
    """Seconds per training image of each candidate model, at the first stage's size and scaled to the others."""

    base_size: int
    per_image: dict[tuple[str, str], float]  # (arch, encoder) -> seconds per image at base_size
    scale: dict[int, float]  # image size -> step time relative to base_size (1.0 there)
    seconds: float  # time spent timing (0 when everything came from the cache)

    def seconds_per_image(self, arch: str, encoder: str, image_size: int) -> float:
        """One training image's step time of the model at `image_size` (a model outside the space: the mean)."""
        base = self.per_image.get((arch, encoder), sum(self.per_image.values()) / len(self.per_image))
        return base * self.scale_at(image_size)

    def scale_at(self, image_size: int) -> float:
        """The step time at `image_size` relative to the base size (between timed sizes: by pixels)."""
        if image_size in self.scale:
            return self.scale[image_size]
        nearest = min(self.scale, key=lambda size: abs(size - image_size))
        return self.scale[nearest] * (image_size / nearest) ** 2

    def slowest(self) -> tuple[str, str]:
        return max(self.per_image, key=self.per_image.get)


def machine_key(device: torch.device) -> str:
    """What makes step times comparable: the processor, the cores, PyTorch, the device (the threads are the
    config's, in each entry's key)."""
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else ""
    return (f"{platform.machine()}|{platform.processor() or platform.node()}|{os.cpu_count()} cores|"
            f"torch {torch.__version__}|{device.type} {gpu}".strip())


def time_config(cfg: TrainConfig) -> float:
    """Seconds per image of one training step of `cfg` (random weights: the weights do not change the time)."""
    device = resolve_device(cfg.device)
    cfg = dataclasses.replace(cfg, encoder_weights="none", compile=False)
    previous = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)  # as the trainer runs it
    try:
        torch.manual_seed(cfg.seed)
        step = TrainStep(cfg, build_model(cfg).to(device), device, SCHEDULE_STEPS)
        images, masks = random_batch(cfg, cfg.image_size, cfg.batch_size)
        step.train(images, masks)
        best = float("inf")
        for _ in range(TIMED_STEPS):
            started = time.perf_counter()
            step.train(images, masks)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            best = min(best, time.perf_counter() - started)
    finally:
        torch.set_num_threads(previous)  # the command's own work (choosing, scoring) keeps its threads
        if device.type == "cuda":
            torch.cuda.empty_cache()  # the timed models' memory is not held while a worker trains on this GPU
    return best / cfg.batch_size


def _key(cfg: TrainConfig) -> str:
    return (f"{cfg.arch}|{cfg.encoder}|threads {cfg.threads or 'all'}|depth {cfg.encoder_depth}|{cfg.decoder_attention}|ds {cfg.deep_supervision}|"
            f"{cfg.image_size} px|batch {cfg.batch_size}|{cfg.precision}|channels_last {cfg.channels_last}")


def measure(models: list[tuple[str, str]], base: TrainConfig, sizes: list[int], timer: Timer = time_config,
            emit: Callable[[str], None] = print) -> StepTimes:
    """Times every model at `sizes[0]` and the slowest at every size (cached; see the module docstring).

    Args:
        models: (arch, encoder) of each candidate.
        base: the config the candidates share otherwise (batch size, precision, device, threads).
        sizes: candidate image sizes, smallest first.
        timer: seconds per image of a config (tests pass a scripted one).
        emit: where progress lines go.
    """
    path = default_cache_dir() / CACHE_FILE
    cache = _read_cache(path)
    machine = machine_key(resolve_device(base.device))
    known = cache.setdefault(machine, {})
    started, timed = time.perf_counter(), 0

    def seconds(cfg: TrainConfig) -> float:
        nonlocal timed
        key = _key(cfg)
        if key not in known:
            known[key] = timer(cfg)
            timed += 1
        return known[key]

    def config(arch: str, encoder: str, size: int) -> TrainConfig:
        return dataclasses.replace(base, arch=arch, encoder=encoder, image_size=size)

    if any(_key(config(*model, sizes[0])) not in known for model in models):
        emit(f"timing one training step of {len(models)} models at {sizes[0]} px on this machine (cached for next time)")
    per_image = {model: seconds(config(*model, sizes[0])) for model in models}
    slowest = max(per_image, key=per_image.get)
    reference = {size: seconds(config(*slowest, size)) for size in sizes}
    spent = time.perf_counter() - started
    if timed:
        _write_cache(path, cache)
    return StepTimes(sizes[0], per_image, {size: reference[size] / reference[sizes[0]] for size in sizes},
                     spent if timed else 0.0)


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}  # none yet, or unreadable: timed again and rewritten


def _write_cache(path: Path, cache: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, cache)
    except OSError:
        pass  # a read-only cache only costs the timing next time
