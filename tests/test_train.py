"""The trainer: history, reporter stops, divergence, determinism, schedules and optimizers, learnability."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

import polyp.train.loop
from polyp.data import prepare_data, write_synthetic
from polyp.metrics import METRIC_NAMES, SegmentationCounts
from polyp.models import count_parameters
from polyp.runtime import Normalizer
from polyp.train import fit
from polyp.train.optim import build_optimizer

HISTORY_KEYS = {"epoch", "train_loss", "val_loss", "val_mdice", "val_miou", "val_dice_pooled", "objective", "lr", "seconds",
                "train_seconds", "images_per_second", "data_wait_fraction"}


class StopAfter:
    """A Reporter that records every call and asks to stop after `epochs` epochs."""

    def __init__(self, epochs: int):
        self.epochs, self.calls = epochs, []

    def on_epoch_end(self, epoch: int, metrics: dict) -> bool:
        self.calls.append((epoch, metrics))
        return epoch >= self.epochs


def test_fit_returns_history_and_best_metrics(tiny_config, synthetic_data):
    cfg = dataclasses.replace(tiny_config, epochs=2)
    reporter = StopAfter(epochs=99)

    result = fit(cfg, synthetic_data, reporter)

    assert result.status == "completed" and result.reason == ""
    assert [row["epoch"] for row in result.history] == [1, 2]
    assert all(set(row) == HISTORY_KEYS for row in result.history)
    assert all(math.isfinite(row["train_loss"]) and row["lr"] > 0 for row in result.history)
    assert [epoch for epoch, _ in reporter.calls] == [1, 2]
    assert reporter.calls[0][1] == result.history[0]
    assert result.best_epoch in (1, 2)
    assert result.best_val["mdice"] == max(row["val_mdice"] for row in result.history)
    assert result.best_val["mdice"] == result.history[result.best_epoch - 1]["val_mdice"]
    assert set(result.best_val) == {"loss", *METRIC_NAMES, "objective"}
    assert result.objective == result.best_val["mdice"]  # no external set: the objective is validation mDice
    assert result.test is not None and set(result.test) == {"loss", *METRIC_NAMES}
    assert not result.model.training
    assert result.parameters == count_parameters(result.model) > 0
    assert result.seconds > 0 and result.images_per_second > 0


def test_best_weights_are_the_ones_returned(tiny_config, synthetic_data):
    result = fit(dataclasses.replace(tiny_config, epochs=2), synthetic_data, evaluate_test=False)

    counts, normalize = SegmentationCounts(), Normalizer(torch.device("cpu"), channels_last=False)
    with torch.no_grad():
        images = torch.from_numpy(synthetic_data.val.images).permute(0, 3, 1, 2)
        counts.update(result.model(normalize(images)), torch.from_numpy(synthetic_data.val.masks)[:, None])

    assert result.test is None
    assert counts.compute()["mdice"] == pytest.approx(result.best_val["mdice"])


def test_reporter_can_stop_the_run(tiny_config, synthetic_data):
    reporter = StopAfter(epochs=1)

    result = fit(dataclasses.replace(tiny_config, epochs=3), synthetic_data, reporter)

    assert result.status == "stopped"
    assert "epoch 1" in result.reason
    assert len(result.history) == 1 and len(reporter.calls) == 1
    assert result.best_epoch == 1 and result.test is not None


class NanLoss(nn.Module):
    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return logits.float().mean() * float("nan")


def test_a_nan_loss_ends_the_run_as_diverged(tiny_config, synthetic_data, monkeypatch):
    monkeypatch.setattr(polyp.train.loop, "build_loss", lambda *args: NanLoss())
    reporter = StopAfter(epochs=99)

    result = fit(dataclasses.replace(tiny_config, epochs=2), synthetic_data, reporter)

    assert result.status == "diverged"
    assert "nan" in result.reason and "epoch 1" in result.reason
    assert result.history == [] and reporter.calls == []
    assert result.best_epoch == 0 and result.best_val == {} and result.test is None


def test_early_stopping_without_val_gain(tiny_config, synthetic_data, monkeypatch):
    # with training skipped the model never changes, so its validation Dice never improves after epoch 1
    skipped = {"train_loss": 0.5, "train_seconds": 0.1, "images_per_second": 80.0, "data_wait_fraction": 0.0}
    monkeypatch.setattr(polyp.train.loop, "train_one_epoch", lambda step, loader: dict(skipped))

    result = fit(dataclasses.replace(tiny_config, epochs=5, early_stop_patience=2), synthetic_data)

    assert result.status == "early_stopped"
    assert len(result.history) == 3 and result.best_epoch == 1


def test_same_seed_gives_the_same_run(tiny_config, synthetic_data):
    cfg = dataclasses.replace(tiny_config, epochs=2, augment="light", precision="fp32")

    first, second = fit(cfg, synthetic_data), fit(cfg, synthetic_data)
    other_seed = fit(dataclasses.replace(cfg, seed=1), synthetic_data)

    assert [row["train_loss"] for row in first.history] == [row["train_loss"] for row in second.history]
    assert [row["val_mdice"] for row in first.history] == [row["val_mdice"] for row in second.history]
    assert [row["train_loss"] for row in first.history] != [row["train_loss"] for row in other_seed.history]


@pytest.mark.parametrize(
    ("schedule", "final_lr_fraction"),
    [("onecycle", None), ("cosine", 0.01), ("plateau", 1.0), ("constant", 1.0)],
)
def test_schedules_run(tiny_config, synthetic_data, schedule, final_lr_fraction):
    cfg = dataclasses.replace(tiny_config, schedule=schedule, warmup_epochs=0.5)

    result = fit(cfg, synthetic_data, evaluate_test=False)

    assert result.status == "completed" and math.isfinite(result.history[0]["train_loss"])
    if final_lr_fraction is not None:
        assert result.history[-1]["lr"] == pytest.approx(cfg.lr * final_lr_fraction)


@pytest.mark.parametrize(("optimizer", "state_key"), [("adamw", "exp_avg"), ("adam", "exp_avg"), ("sgd", "momentum_buffer")])
def test_optimizers_run(tiny_config, synthetic_data, monkeypatch, optimizer, state_key):
    built = []

    def recording_build_optimizer(model, cfg):
        built.append(build_optimizer(model, cfg))
        return built[-1]

    monkeypatch.setattr(polyp.train.loop, "build_optimizer", recording_build_optimizer)
    cfg = dataclasses.replace(tiny_config, optimizer=optimizer, schedule="constant", warmup_epochs=0)

    result = fit(cfg, synthetic_data, evaluate_test=False)

    assert result.status == "completed" and math.isfinite(result.history[0]["train_loss"])
    assert type(built[0]).__name__.lower() == optimizer
    assert all(state_key in state for state in built[0].state.values()) and built[0].state  # it took steps


@pytest.mark.slow
def test_a_small_model_learns_the_synthetic_polyps(tiny_config, tmp_path):
    data = prepare_data(write_synthetic(tmp_path / "synthetic", count=48, size=64), 64, cache=False)
    cfg = dataclasses.replace(tiny_config, image_size=64, encoder_depth=4, epochs=8, augment="light")

    result = fit(cfg, data)

    assert result.status == "completed"
    assert result.best_val["mdice"] > 0.7, result.history
    assert result.test["mdice"] > 0.7


def test_without_validation_images_the_last_epoch_is_kept(tiny_config, synthetic_data):
    no_val = dataclasses.replace(synthetic_data, val=synthetic_data.val.subset([]))
    assert len(no_val.val) == 0
    result = fit(dataclasses.replace(tiny_config, epochs=2), no_val)
    assert result.status == "completed" and result.best_epoch == 2 and result.best_val == {}
    assert all(math.isnan(row["val_mdice"]) for row in result.history)
    assert result.test is not None and 0 <= result.test["mdice"] <= 1


@pytest.mark.parametrize("change", [{"schedule": "plateau"}, {"early_stop_patience": 2}])
def test_without_validation_images_val_driven_settings_are_refused(tiny_config, synthetic_data, change):
    no_val = dataclasses.replace(synthetic_data, val=synthetic_data.val.subset([]))
    with pytest.raises(ValueError, match="needs validation images"):
        fit(dataclasses.replace(tiny_config, **change), no_val)
