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
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, update_bn
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
from polyp.selection import IN_DOMAIN, objective_value
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
    model: nn.Module  # the model holding the best epoch's (or the averaged) weights, in eval mode
    parameters: int  # trainable parameters
    seconds: float  # wall time of the whole run
    reason: str = ""  # why it stopped early, if it did
    averaged: str = ""  # with swa_epochs: "epochs A-B" when the averaged weights were chosen, else ""

    @property
    def objective(self) -> float:
        """The best epoch's objective (polyp.selection): its validation mDice unless several sets were scored."""
        return float(self.best_val.get("objective", self.best_val.get("mdice", math.nan)))

    @property
    def images_per_second(self) -> float:
        """Mean training throughput over the epochs run."""
        speeds = [h["images_per_second"] for h in self.history]
        return float(np.mean(speeds)) if speeds else 0.0


MULTI_SCALES = (0.75, 1.0, 1.25)  # PraNet's rescale factors


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
        self.scales = random.Random(cfg.seed)  # multi_scale: which size each batch is trained at

    def rescaled(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """With `multi_scale`, the batch resized (bilinear, as PraNet; masks thresholded again at 0.5) to 0.75, 1 or
        1.25 times the image size, the first and last rounded to a multiple of 32 as PraNet does (192 px:
        160, 192, 256; 352 px: 256, 352, 448); unchanged otherwise."""
        if not self.cfg.multi_scale:
            return x, y
        scale = self.scales.choice(MULTI_SCALES)
        size = self.cfg.image_size if scale == 1.0 else max(32, math.floor(self.cfg.image_size * scale / 32 + 0.5) * 32)
        if size == x.shape[-1]:
            return x, y
        masks = F.interpolate(y, size=(size, size), mode="bilinear", align_corners=False)
        return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False), (masks >= 0.5).to(y.dtype)

    def supervised_loss(self, logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """The loss of one output (N,1,H,W), or the mean over a deep-supervised model's heads (heads,N,1,H,W)."""
        if logits.dim() == 5:
            return torch.stack([self.loss_fn(head, masks) for head in logits]).mean()
        return self.loss_fn(logits, masks)

    def train(self, images: torch.Tensor, masks: torch.Tensor) -> float:
        x, y = self.rescaled(self.normalize(images), masks.to(self.device, non_blocking=True))
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
def evaluate(step: TrainStep, images: ImageSet, batch_size: int, model: nn.Module | None = None) -> dict[str, float]:
    """Loss and metrics (see polyp.metrics) of the current model (or `model`) on `images`, without augmentation."""
    return _score(step, images, batch_size, model)[0]


@torch.no_grad()
def _score(step: TrainStep, images: ImageSet, batch_size: int,
           model: nn.Module | None = None) -> tuple[dict[str, float], SegmentationCounts]:
    forward = model if model is not None else step.forward
    forward.eval()
    counts, total_loss = SegmentationCounts(), 0.0
    loader = DataLoader(SegmentationDataset(images), batch_size=batch_size, shuffle=False)
    for batch, masks in loader:
        with autocast(step.device, step.dtype):
            logits = forward(step.normalize(batch))
        masks = masks.to(step.device)
        total_loss += step.loss_fn(logits, masks).item() * len(batch)
        counts.update(logits, masks)
    return {"loss": total_loss / max(1, len(images)), **counts.compute()}, counts


def validate(step: TrainStep, data: PolypData, batch_size: int, model: nn.Module | None = None) -> dict[str, float]:
    """Every validation score of one epoch: the in-domain split's metrics, each training set's part of it
    ("NAME_mdice", when there are several), each external set's "NAME_mdice" and "NAME_miou", and the
    "objective" (polyp.selection) they give."""
    if len(data.val):
        scores, counts = _score(step, data.val, batch_size, model)
        dice = counts.per_image_dice()
        for name, where in data.val_parts().items():
            scores[f"{name}_mdice"] = float(np.mean([dice[i] for i in where])) if where else math.nan
    else:
        scores = dict.fromkeys(("loss", *METRIC_NAMES), math.nan)
    for name, images in data.external.items():
        outside = evaluate(step, images, batch_size, model)
        scores[f"{name}_mdice"], scores[f"{name}_miou"] = outside["mdice"], outside["miou"]
    by_set = {IN_DOMAIN: scores["mdice"], **{key[: -len("_mdice")]: value for key, value in scores.items()
                                             if key.endswith("_mdice")}}
    scores["objective"] = objective_value(data.objective, by_set, list(data.external))
    return scores


def better(score: float, than: float) -> bool:
    """Whether validation `score` beats `than` (a NaN score, of a set without images, beats nothing and loses
    to any number)."""
    if math.isnan(score):
        return False
    return math.isnan(than) or score > than


def _set_columns(val: dict[str, float]) -> dict[str, float]:
    """The history columns of the per-set scores and the objective ("val_NAME_mdice", ..., "objective")."""
    columns = {f"val_{key}": value for key, value in val.items() if key.endswith(("_mdice", "_miou"))
               and key not in ("mdice", "miou")}
    return {**columns, "objective": val["objective"]}


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
    a val_NAME_mdice (and val_NAME_miou for an external set) per scored set when several are, objective,
    lr, seconds, train_seconds, images_per_second, data_wait_fraction. The best epoch is the one with the
    best objective (`data.objective`: by default the mean over the in-domain split and every external set,
    which is the validation mDice when there is no external set).

    With `cfg.swa_epochs` the weights of the last epochs run are averaged (their batch-norm statistics
    recomputed on the training images); the average is the result when it scores a better objective than the
    best single epoch.

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
    check_validation(cfg, len(data.val) + sum(map(len, data.external.values())))
    has_val = len(data.val) > 0 or bool(data.external)
    started = time.perf_counter()
    generator = _seed_everything(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    model = build_model(cfg).to(device)
    loader = train_loader(cfg, data.train, generator, device)
    step = TrainStep(cfg, model, device, len(loader))
    average = Averager(cfg, step, loader, data) if cfg.swa_epochs else None
    history, best, best_state, status, reason, stale = [], None, None, "completed", "", 0
    for epoch in range(1, cfg.epochs + 1):
        trained = train_one_epoch(step, loader)
        if trained.get("diverged"):
            status, reason = "diverged", f"training loss became {trained['train_loss']} in epoch {epoch}"
            break
        val = validate(step, data, cfg.batch_size) if has_val else dict.fromkeys(("loss", *METRIC_NAMES, "objective"),
                                                                                 math.nan)
        step.schedule.after_epoch(val["objective"])
        row = {"epoch": epoch, "train_loss": trained["train_loss"], "val_loss": val["loss"], "val_mdice": val["mdice"],
               "val_miou": val["miou"], "val_dice_pooled": val["dice_pooled"], **_set_columns(val),
               "lr": step.optimizer.param_groups[0]["lr"],
               "seconds": time.perf_counter() - started - sum(h["seconds"] for h in history),
               **{k: trained[k] for k in ("train_seconds", "images_per_second", "data_wait_fraction")}}
        history.append(row)
        if average is not None:
            average.after_epoch(epoch)
        if not has_val:  # nothing to select by: the last epoch's weights are the result
            best = (epoch, {})
        elif best is None or better(val["objective"], best[1]["objective"]):
            best, stale = (epoch, val), 0
            best_state = copy.deepcopy({k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()})
        else:
            stale += 1
        if reporter is not None and reporter.on_epoch_end(epoch, dict(row)):
            status, reason = "stopped", f"stopped by the reporter after epoch {epoch}"
            break
        if cfg.early_stop_patience and stale >= cfg.early_stop_patience:
            status, reason = "early_stopped", f"no val objective gain for {stale} epochs"
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    averaged = ""
    if average is not None and best and status in ("completed", "early_stopped") and (
            chosen := average.result(best[1], has_val)):
        model, best, averaged = chosen[0], (average.last, chosen[1]), average.epochs
    test = evaluate(step, data.test, cfg.batch_size, model) if evaluate_test and best and len(data.test) else None
    return TrainResult(status=status, history=history, best_epoch=best[0] if best else 0,
                       best_val=best[1] if best else {}, test=test, model=model.eval(),
                       parameters=count_parameters(model), seconds=time.perf_counter() - started, reason=reason,
                       averaged=averaged)


class Averager:
    """Stochastic weight averaging of the last `cfg.swa_epochs` epochs of the schedule (torch.optim.swa_utils);
    a run that stops early averages the ones of them it ran (none when it stops before they begin)."""

    def __init__(self, cfg: TrainConfig, step: TrainStep, loader: DataLoader, data: PolypData):
        self.cfg, self.step, self.loader, self.data = cfg, step, loader, data
        self.model = AveragedModel(step.model)
        self.first = max(1, cfg.epochs - cfg.swa_epochs + 1)
        self.averaged: list[int] = []

    def after_epoch(self, epoch: int) -> None:
        """Adds this epoch's weights to the average when it is one of the last `swa_epochs`."""
        if epoch >= self.first:
            self.model.update_parameters(self.step.model)
            self.averaged.append(epoch)

    @property
    def last(self) -> int:
        """The last epoch averaged."""
        return self.averaged[-1]

    @property
    def epochs(self) -> str:
        """The epochs averaged, as "epochs A-B"."""
        return f"epochs {self.averaged[0]}-{self.averaged[-1]}" if self.averaged else ""

    def result(self, best_val: dict[str, float], has_val: bool) -> tuple[nn.Module, dict[str, float]] | None:
        """(the averaged model, its validation scores) when it beats `best_val`'s objective (or when there is no
        validation set to compare by); None when it does not, or when no epoch was averaged."""
        if len(self.averaged) < 2:
            return None
        normalize = self.step.normalize
        update_bn((normalize(images) for images, _ in self.loader), self.model)  # batch-norm of the averaged weights
        averaged = self.model.module.eval()
        if not has_val:
            return averaged, {}
        val = validate(self.step, self.data, self.cfg.batch_size, averaged)
        return (averaged, val) if better(val["objective"], best_val["objective"]) else None
