"""The training loop: `fit` trains one config on decoded data and returns its history and best weights."""

from __future__ import annotations

import copy
import math
import random
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from polyp.config import ConfigError, TrainConfig
from polyp.data import ImageSet, PolypData, SegmentationDataset
from polyp.losses import build_loss
from polyp.metrics import METRIC_NAMES, SegmentationCounts
from polyp.models import build_model, count_parameters, input_normalization
from polyp.runtime import (
    Normalizer,
    autocast,
    resolve_device,
    resolve_precision,
    strided_depthwise_in_float32,
)
from polyp.train.loader import train_loader
from polyp.train.optim import Schedule, build_optimizer
from polyp.train.reporter import Reporter


@dataclass
class TrainResult:
    """What one training run produced."""

    status: str  # completed | early_stopped | stopped (the reporter asked) | diverged
    history: list[dict[str, Any]]  # one dict per epoch (see `fit`)
    best_epoch: int  # 1-based epoch of the best validation mDice (0 if none finished)
    best_val: dict[str, float]  # validation metrics of the best epoch
    test: dict[str, float] | None  # test metrics of the best epoch's weights (reporting only)
    model: nn.Module  # the model holding the best epoch's weights, in eval mode
    parameters: int  # trainable parameters
    seconds: float  # wall time of the whole run
    reason: str = ""  # why it stopped early, if it did

    @property
    def images_per_second(self) -> float:
        """Mean training throughput over the epochs run."""
        speeds = [h["images_per_second"] for h in self.history]
        return float(np.mean(speeds)) if speeds else 0.0


class TrainStep:
    """Everything one training step needs, built once: the trainer's step, also timed by `polyp.bench`.

    Puts `model` in channels-last memory format when `cfg.channels_last` is set.
    """

    def __init__(self, cfg: TrainConfig, model: nn.Module, device: torch.device, steps_per_epoch: int):
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.cfg, self.model, self.device = cfg, model, device
        self.dtype = resolve_precision(cfg.precision, device)
        strided_depthwise_in_float32(model, device, self.dtype)
        self.normalize = Normalizer(device, cfg.channels_last, *input_normalization(cfg))
        self.loss_fn = build_loss(cfg.loss, cfg.tversky_alpha, cfg.tversky_beta, cfg.focal_gamma)
        self.optimizer = build_optimizer(model, cfg)
        self.schedule = Schedule(self.optimizer, cfg, steps_per_epoch)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.dtype == torch.float16)
        self.forward = torch.compile(model) if cfg.compile else model

    def supervised_loss(self, logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """The loss of one output (N,1,H,W), or the mean over a deep-supervised model's heads (heads,N,1,H,W)."""
        if logits.dim() == 5:
            return torch.stack([self.loss_fn(head, masks) for head in logits]).mean()
        return self.loss_fn(logits, masks)

    def train(self, images: torch.Tensor, masks: torch.Tensor) -> float:
        x, y = self.normalize(images), masks.to(self.device, non_blocking=True)
        with autocast(self.device, self.dtype):
            logits = self.forward(x)
        loss = self.supervised_loss(logits, y)
        value = loss.item()
        if not math.isfinite(value):
            return value
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.schedule.after_batch()
        return value


def _seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def train_one_epoch(step: TrainStep, loader: DataLoader) -> dict[str, float]:
    """One pass over the training data; returns mean loss, seconds, images/s and time spent waiting for data."""
    step.model.train()
    total_loss, images_seen, waited = 0.0, 0, 0.0
    start = tick = time.perf_counter()
    for images, masks in loader:
        waited += time.perf_counter() - tick
        loss = step.train(images, masks)
        if not math.isfinite(loss):
            return {"train_loss": loss, "diverged": True}
        total_loss += loss * len(images)
        images_seen += len(images)
        tick = time.perf_counter()
    seconds = time.perf_counter() - start
    return {"train_loss": total_loss / max(1, images_seen), "train_seconds": seconds,
            "images_per_second": images_seen / max(seconds, 1e-9), "data_wait_fraction": waited / max(seconds, 1e-9)}


@torch.no_grad()
def evaluate(step: TrainStep, images: ImageSet, batch_size: int) -> dict[str, float]:
    """Loss and metrics (see polyp.metrics) of the current model on `images`, without augmentation."""
    step.model.eval()
    counts, total_loss = SegmentationCounts(), 0.0
    loader = DataLoader(SegmentationDataset(images), batch_size=batch_size, shuffle=False)
    for batch, masks in loader:
        with autocast(step.device, step.dtype):
            logits = step.forward(step.normalize(batch))
        masks = masks.to(step.device)
        total_loss += step.loss_fn(logits, masks).item() * len(batch)
        counts.update(logits, masks)
    return {"loss": total_loss / max(1, len(images)), **counts.compute()}


def check_validation(cfg: TrainConfig, val_images: int) -> None:
    """Raises ConfigError when `cfg` needs validation images (plateau schedule, early stopping) and there are none."""
    if val_images:
        return
    if cfg.schedule == "plateau":
        raise ConfigError("schedule 'plateau' needs validation images; the split has none (val fraction 0)")
    if cfg.early_stop_patience:
        raise ConfigError("early_stop_patience needs validation images; the split has none (val fraction 0)")


def fit(cfg: TrainConfig, data: PolypData, reporter: Reporter | None = None, evaluate_test: bool = True) -> TrainResult:
    """Trains `cfg` on `data.train`, selects the epoch with the best validation mDice.

    With no validation images (a split with val fraction 0, as plain scripts that train on everything but the
    test set do) the last epoch's weights are the result and the history's val_* fields are NaN.

    Each epoch's history entry holds: epoch, train_loss, val_loss, val_mdice, val_miou, val_dice_pooled,
    lr, seconds, train_seconds, images_per_second, data_wait_fraction.

    Args:
        cfg: the training config.
        data: decoded train/val/test images (`polyp.data.prepare_data`).
        reporter: told every epoch's metrics; returning True stops the run (status "stopped").
        evaluate_test: also score the best weights on `data.test` (reported, never used to select).

    Returns:
        The TrainResult; a loss that turns NaN or infinite ends the run with status "diverged".

    Example:
        >>> from polyp.data import prepare_data
        >>> from polyp.train import fit
        >>> result = fit(TrainConfig(image_size=64, epochs=2), prepare_data("synthetic", 64))  # doctest: +SKIP
    """
    check_validation(cfg, len(data.val))
    has_val = len(data.val) > 0
    started = time.perf_counter()
    generator = _seed_everything(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    model = build_model(cfg).to(device)
    loader = train_loader(cfg, data.train, generator, device)
    step = TrainStep(cfg, model, device, len(loader))
    history, best, best_state, status, reason, stale = [], None, None, "completed", "", 0
    for epoch in range(1, cfg.epochs + 1):
        trained = train_one_epoch(step, loader)
        if trained.get("diverged"):
            status, reason = "diverged", f"training loss became {trained['train_loss']} in epoch {epoch}"
            break
        val = evaluate(step, data.val, cfg.batch_size) if has_val else dict.fromkeys(("loss", *METRIC_NAMES), math.nan)
        step.schedule.after_epoch(val["mdice"])
        row = {"epoch": epoch, "train_loss": trained["train_loss"], "val_loss": val["loss"], "val_mdice": val["mdice"],
               "val_miou": val["miou"], "val_dice_pooled": val["dice_pooled"], "lr": step.optimizer.param_groups[0]["lr"],
               "seconds": time.perf_counter() - started - sum(h["seconds"] for h in history),
               **{k: trained[k] for k in ("train_seconds", "images_per_second", "data_wait_fraction")}}
        history.append(row)
        if not has_val:  # nothing to select by: the last epoch's weights are the result
            best = (epoch, {})
        elif best is None or val["mdice"] > best[1]["mdice"]:
            best, stale = (epoch, val), 0
            best_state = copy.deepcopy({k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()})
        else:
            stale += 1
        if reporter is not None and reporter.on_epoch_end(epoch, dict(row)):
            status, reason = "stopped", f"stopped by the reporter after epoch {epoch}"
            break
        if cfg.early_stop_patience and stale >= cfg.early_stop_patience:
            status, reason = "early_stopped", f"no val mDice gain for {stale} epochs"
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    test = evaluate(step, data.test, cfg.batch_size) if evaluate_test and best and len(data.test) else None
    return TrainResult(status=status, history=history, best_epoch=best[0] if best else 0,
                       best_val=best[1] if best else {}, test=test, model=model.eval(),
                       parameters=count_parameters(model), seconds=time.perf_counter() - started, reason=reason)
