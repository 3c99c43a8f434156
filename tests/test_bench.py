"""The benchmark: its report, and that the step it times is the trainer's own."""

from __future__ import annotations

import re

import pytest
import torch

from polyp import bench
from polyp.config import TrainConfig
from polyp.train.loop import TrainStep

TINY = ["--arch", "linknet", "--encoder", "resnet18", "--encoder-depth", "3", "--image-size", "32",
        "--batch-size", "2", "--threads", "1", "--steps", "1", "--rounds", "1", "--warmup", "1",
        "--peak-size", "128", "--predict-size", "32", "--predict-batch", "2", "--wait-steps", "2"]


def _number(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not in the report:\n{text}"
    return float(match.group(1))


def test_report_ends_with_the_speed_up(synthetic_dir, capsys):
    assert bench.main([*TINY, "--data", str(synthetic_dir)]) == 0
    report = capsys.readouterr().out
    assert report.strip().splitlines()[-1].startswith("speed-up of the default training step over plain float32:")
    assert _number(r"over plain float32: ([\d.]+)x\s*$", report) > 0
    assert _number(r"bfloat16 ([\d.]+) GFLOP/s", report) > 0
    assert _number(r"training FLOPs .*: ([\d.]+) GFLOP per image", report) > 0
    assert _number(r"\n  default\s+([\d.]+)", report) > 0
    assert _number(r"waiting for batches ([\d.]+)%", report) >= 0
    assert str(synthetic_dir) in report


def test_missing_data_folder_falls_back_to_synthetic(tmp_path, capsys):
    assert bench.main([*TINY, "--data", str(tmp_path / "absent")]) == 0
    assert "data folder not found: synthetic images instead" in capsys.readouterr().out


def test_bad_config_is_an_error_naming_the_key(capsys):
    assert bench.main(["--arch", "nope"]) == 2
    assert "arch" in capsys.readouterr().err


def test_both_steps_are_trainer_steps_on_the_same_weights():
    cfg = TrainConfig(arch="linknet", encoder="resnet18", encoder_depth=3, image_size=32, device="cpu")
    steps = bench.make_steps(cfg, torch.device("cpu"))
    plain, default = steps["plain float32"], steps["default"]
    assert isinstance(plain, TrainStep) and isinstance(default, TrainStep)
    assert default.cfg == cfg
    assert (plain.cfg.precision, plain.cfg.channels_last, plain.cfg.compile) == ("fp32", False, False)
    for (name, a), b in zip(plain.model.state_dict().items(), default.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_matmul_peak_is_positive():
    assert bench.matmul_gflops(torch.float32, size=64, repeats=1) > 0


@pytest.mark.slow
def test_default_setting_runs(synthetic_dir, capsys):
    """The issue's setting at a smaller size: UNet++ / MobileNetV2."""
    args = ["--image-size", "64", "--batch-size", "2", "--steps", "1", "--rounds", "1", "--warmup", "1",
            "--predict-size", "64", "--predict-batch", "2", "--wait-steps", "2", "--data", str(synthetic_dir)]
    assert bench.main(args) == 0
    assert "speed-up of the default training step" in capsys.readouterr().out
