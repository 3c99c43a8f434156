"""A fake trainer with scripted metrics, for testing the search layer in seconds (no real training).

Use it in-process (`Objective(..., trainer=fake_fit)`) or from the command line of any search command:
`python -m search.run ... --trainer search.testing:fake_fit`. Environment knobs:
POLYP_FAKE_EPOCH_SECONDS (sleep per epoch, default 0), POLYP_FAKE_FAIL_LR (configs with lr above this raise
RuntimeError), POLYP_FAKE_DIVERGE_LR (configs with lr above this diverge).
"""

from __future__ import annotations

import math
import os
import time

import torch

from polyp.config import TrainConfig, parse_config
from polyp.data import PolypData
from polyp.models import build_model, count_parameters
from polyp.train import Reporter, TrainResult


def scripted_dice(cfg: TrainConfig, epoch: int) -> float:
    """A smooth made-up validation mDice: best near lr = 3e-3, rising with epochs."""
    closeness = math.exp(-((math.log10(cfg.lr) - math.log10(3e-3)) ** 2))
    return round(0.9 * closeness * (1 - math.exp(-epoch / 2)), 6)


def _metrics(dice: float) -> dict[str, float]:
    return {"loss": 1 - dice, "mdice": dice, "miou": dice * 0.8, "dice_pooled": dice, "iou_pooled": dice * 0.8,
            "precision": dice, "recall": dice, "accuracy": 0.9}


def fake_fit(cfg: TrainConfig, data: PolypData, reporter: Reporter | None = None, evaluate_test: bool = True) -> TrainResult:
    """Plays a training run with `scripted_dice` metrics, calling the reporter every epoch like `fit`."""
    started = time.perf_counter()
    if cfg.lr > float(os.environ.get("POLYP_FAKE_FAIL_LR", "inf")):
        raise RuntimeError(f"scripted failure: lr {cfg.lr} is above POLYP_FAKE_FAIL_LR")
    pause = float(os.environ.get("POLYP_FAKE_EPOCH_SECONDS", "0"))
    torch.manual_seed(cfg.seed)
    model = build_model(parse_config({"encoder_weights": "none"}, base=cfg))  # the model its config names
    history, status, reason = [], "completed", ""
    for epoch in range(1, cfg.epochs + 1):
        time.sleep(pause)
        if cfg.lr > float(os.environ.get("POLYP_FAKE_DIVERGE_LR", "inf")):
            status, reason = "diverged", f"training loss became nan in epoch {epoch}"
            break
        dice = scripted_dice(cfg, epoch)
        row = {"epoch": epoch, "train_loss": 1 - dice + 0.05, "val_loss": 1 - dice, "val_mdice": dice, "val_miou": dice * 0.8,
               "val_dice_pooled": dice, "lr": cfg.lr, "seconds": pause, "train_seconds": pause,
               "images_per_second": 100.0, "data_wait_fraction": 0.0}
        history.append(row)
        if reporter is not None and reporter.on_epoch_end(epoch, dict(row)):
            status, reason = "stopped", f"stopped by the reporter after epoch {epoch}"
            break
    best = max(history, key=lambda h: h["val_mdice"]) if history else None
    return TrainResult(status=status, history=history, best_epoch=best["epoch"] if best else 0,
                       best_val=_metrics(best["val_mdice"]) if best else {},
                       test=_metrics(best["val_mdice"] - 0.01) if best and evaluate_test else None,
                       model=model.eval(), parameters=count_parameters(model), seconds=time.perf_counter() - started,
                       reason=reason)
