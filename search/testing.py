"""Fake trainers with scripted metrics, for testing the search layer in seconds (no real training).

A trainer is any callable `(cfg, data, reporter=None, evaluate_test=True) -> TrainResult`, as `polyp`'s `fit`
is. Pass one in-process, or name one on the command line of any search command:

    >>> objective = Objective(spec, data, run_dir, trainer=FakeTrainer(fail_above_lr=1e-2))  # doctest: +SKIP

    python -m search.run --study demo --trainer search.testing:fake_fit

Configured ones that a command line or a worker process needs by name live in a module of their own
(tests/fake_trainers.py: `--trainer fake_trainers:epochs_200ms`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from polyp.config import TrainConfig, parse_config
from polyp.data import PolypData
from polyp.models import build_model, count_parameters
from polyp.selection import objective_value
from polyp.train import Reporter, TrainResult


def scripted_dice(cfg: TrainConfig, epoch: int) -> float:
    """A smooth made-up validation mDice: best near lr = 3e-3, rising with epochs."""
    closeness = math.exp(-((math.log10(cfg.lr) - math.log10(3e-3)) ** 2))
    return round(0.9 * closeness * (1 - math.exp(-epoch / 2)), 6)


def _metrics(dice: float) -> dict[str, float]:
    return {"loss": 1 - dice, "mdice": dice, "miou": dice * 0.8, "dice_pooled": dice, "iou_pooled": dice * 0.8,
            "precision": dice, "recall": dice, "accuracy": 0.9}


@dataclass(frozen=True)
class FakeTrainer:
    """Plays a training run with `scripted_dice` metrics, calling the reporter every epoch like `fit`.

    It builds the model its config names (so checkpoints load like real ones) but trains nothing.

    Args:
        epoch_seconds: seconds slept per epoch, so that workers' trials overlap in time.
        fail_above_lr: a config with a higher lr raises RuntimeError before its first epoch.
        diverge_above_lr: a config with a higher lr diverges (training loss nan) in its first epoch.
    """

    epoch_seconds: float = 0.0
    fail_above_lr: float = math.inf
    diverge_above_lr: float = math.inf

    def __call__(self, cfg: TrainConfig, data: PolypData, reporter: Reporter | None = None,
                 evaluate_test: bool = True) -> TrainResult:
        started = time.perf_counter()
        if cfg.lr > self.fail_above_lr:
            raise RuntimeError(f"scripted failure: lr {cfg.lr} is above fail_above_lr {self.fail_above_lr}")
        torch.manual_seed(cfg.seed)
        model = build_model(parse_config({"encoder_weights": "none"}, base=cfg))
        history, status, reason = [], "completed", ""
        for epoch in range(1, cfg.epochs + 1):
            time.sleep(self.epoch_seconds)
            if cfg.lr > self.diverge_above_lr:
                status, reason = "diverged", f"training loss became nan in epoch {epoch}"
                break
            row = self._epoch_row(cfg, epoch, data)
            history.append(row)
            if reporter is not None and reporter.on_epoch_end(epoch, dict(row)):
                status, reason = "stopped", f"stopped by the reporter after epoch {epoch}"
                break
        best = max(history, key=lambda h: h["objective"]) if history else None
        sets = {key[len("val_"):]: value for key, value in best.items() if key.startswith("val_") and
                key.endswith(("_mdice", "_miou")) and key not in ("val_mdice", "val_miou")} if best else {}
        return TrainResult(status=status, history=history, best_epoch=best["epoch"] if best else 0,
                           best_val={**_metrics(best["val_mdice"]), **sets, "objective": best["objective"]} if best else {},
                           test=_metrics(best["val_mdice"] - 0.01) if best and evaluate_test else None,
                           model=model.eval(), parameters=count_parameters(model),
                           seconds=time.perf_counter() - started, reason=reason)

    def _epoch_row(self, cfg: TrainConfig, epoch: int, data: PolypData | None = None) -> dict[str, float]:
        """One epoch's history row, as `fit` writes it; an external set scores 0.1 below the in-domain split per
        place in `data.external`, and makes a larger batch size hold up better there (so that choosing by it
        changes the winner)."""
        dice = scripted_dice(cfg, epoch)
        outside = {name: round(dice - 0.1 * (place + 1) + 0.01 * math.log2(cfg.batch_size), 6)
                   for place, name in enumerate(data.external if data is not None else {})}
        sets = {f"val_{name}_mdice": value for name, value in outside.items()}
        sets.update({f"val_{name}_miou": value * 0.8 for name, value in outside.items()})
        objective = objective_value(data.objective, {"val": dice, **outside}, list(outside)) if outside else dice
        return {"epoch": epoch, "train_loss": 1 - dice + 0.05, "val_loss": 1 - dice, "val_mdice": dice,
                "val_miou": dice * 0.8, "val_dice_pooled": dice, **sets, "objective": objective, "lr": cfg.lr,
                "seconds": self.epoch_seconds, "train_seconds": self.epoch_seconds, "images_per_second": 100.0,
                "data_wait_fraction": 0.0}


fake_fit = FakeTrainer()  # `--trainer search.testing:fake_fit`


class InterruptingTrainer:
    """Plays `trainer` but raises KeyboardInterrupt, as Ctrl-C does, on its `on_call`-th call.

    It counts calls from its creation: a test that shares a named one calls `reset()` first.

    Args:
        on_call: the call (1 = the first) that is interrupted; later calls train again.
        trainer: the trainer that plays every other call.
    """

    def __init__(self, on_call: int, trainer: Callable[..., TrainResult] = fake_fit):
        self.on_call = on_call
        self.trainer = trainer
        self.calls = 0

    def reset(self) -> None:
        """Counts calls from zero again."""
        self.calls = 0

    def __call__(self, cfg: TrainConfig, data: PolypData, reporter: Reporter | None = None,
                 evaluate_test: bool = True) -> TrainResult:
        self.calls += 1
        if self.calls == self.on_call:
            raise KeyboardInterrupt
        return self.trainer(cfg, data, reporter, evaluate_test)
