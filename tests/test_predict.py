"""The command lines: `python -m polyp.predict` on a folder of images, `python -m polyp.train` on synthetic data."""

from __future__ import annotations

import csv
import json
import re

import cv2
import numpy as np
import pytest
import torch

import polyp.predict
import polyp.train.__main__
from polyp.checkpoint import load_checkpoint, save_checkpoint
from polyp.config import TrainConfig
from polyp.data import Split, read_mask, write_synthetic
from polyp.images import binary_mask, write_image
from polyp.metrics import dice_iou
from polyp.models import build_model
from polyp.plots import predict_masks
from polyp.runtime import Normalizer

IMAGE_SIZE = 40  # the originals' side: deliberately not the model's 32 px input


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """An untrained LinkNet checkpoint."""
    cfg = TrainConfig(arch="linknet", encoder="resnet18", encoder_depth=3, image_size=32)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    return save_checkpoint(model, cfg, tmp_path_factory.mktemp("model") / "checkpoint")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Three synthetic 40 px images with masks."""
    return write_synthetic(tmp_path_factory.mktemp("photos"), count=3, size=IMAGE_SIZE, seed=5)


def test_predict_writes_masks_overlays_and_scores(checkpoint, photos, tmp_path, capsys):
    out = tmp_path / "out"

    code = polyp.predict.main(["--model", str(checkpoint), "--input", str(photos / "images"), "--out", str(out),
                               "--masks", str(photos / "masks")])

    assert code == 0
    printed = capsys.readouterr().out
    stems = [f"synth_{i:04d}" for i in range(3)]
    dices = []
    for stem in stems:
        mask = cv2.imread(str(out / f"{stem}_mask.png"), cv2.IMREAD_UNCHANGED)
        overlay = cv2.imread(str(out / f"{stem}_overlay.png"), cv2.IMREAD_UNCHANGED)
        assert mask.shape == (IMAGE_SIZE, IMAGE_SIZE) and set(np.unique(mask)) <= {0, 255}
        assert overlay.shape == (IMAGE_SIZE, IMAGE_SIZE, 3)
        dice, iou = dice_iou(torch.from_numpy(mask > 0), torch.from_numpy(read_mask(photos / "masks" / f"{stem}.png")))
        line = re.search(rf"^{stem}  dice (\S+)  iou (\S+)$", printed, re.MULTILINE)
        assert line, printed
        assert float(line.group(1)) == pytest.approx(dice, abs=1e-4)
        assert float(line.group(2)) == pytest.approx(iou, abs=1e-4)
        dices.append(dice)
    mean = re.search(r"mean over 3 images: mdice (\S+)", printed)
    assert mean and float(mean.group(1)) == pytest.approx(np.mean(dices), abs=1e-4)
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{s}_{kind}.png" for s in stems for kind in ("mask", "overlay"))


def test_predict_writes_gradcam_heat_maps(checkpoint, photos, tmp_path):
    image = photos / "images" / "synth_0001.jpg"

    code = polyp.predict.main(["--model", str(checkpoint), "--input", str(image), "--out", str(tmp_path), "--gradcam"])

    assert code == 0
    heat = cv2.imread(str(tmp_path / "synth_0001_gradcam.png"))
    assert heat.shape == (IMAGE_SIZE, IMAGE_SIZE, 3)
    assert (tmp_path / "synth_0001_mask.png").is_file()


def test_predict_refuses_a_missing_model_folder(photos, tmp_path, capsys):
    code = polyp.predict.main(["--model", str(tmp_path / "no-model"), "--input", str(photos / "images"),
                               "--out", str(tmp_path / "out")])

    assert code == 2
    error = capsys.readouterr().err
    assert "no-model" in error and "does not exist" in error
    assert not (tmp_path / "out").exists()


def test_train_command_writes_a_run_folder(synthetic_dir, tmp_path, capsys):
    out = tmp_path / "run"

    code = polyp.train.__main__.main([
        "--data", str(synthetic_dir), "--out", str(out), "--val-fraction", "0.25", "--test-fraction", "0.25",
        "--arch", "linknet", "--encoder", "resnet18", "--encoder-depth", "3", "--image-size", "32",
        "--batch-size", "4", "--epochs", "1", "--augment", "none", "--precision", "fp32", "--threads", "1",
        "--device", "cpu",
    ])

    assert code == 0
    assert "epoch 1/1" in capsys.readouterr().out
    with open(out / "history.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 1 and rows[0]["epoch"] == "1" and float(rows[0]["val_mdice"]) >= 0
    split = Split.load(out / "split.json")
    assert (len(split.train), len(split.val), len(split.test)) == (8, 4, 4)
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "completed" and result["best_epoch"] == 1
    assert set(result["val"]) >= {"mdice", "miou"} and result["test"]["mdice"] >= 0
    model, info = load_checkpoint(out / "checkpoint")
    assert info.config.arch == "linknet" and info.config.image_size == 32
    assert info.extra["metrics"]["val"]["mdice"] == result["val"]["mdice"]


def test_train_command_refuses_a_bad_flag_value(synthetic_dir, tmp_path, capsys):
    code = polyp.train.__main__.main(["--data", str(synthetic_dir), "--out", str(tmp_path / "run"), "--lr", "fast"])

    assert code == 2
    assert "lr:" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_batched_default_precision_matches_plain_float32(checkpoint, photos, tmp_path):
    """Batches of 2 over 3 images with the default (channels-last, bf16 where supported) give the masks of
    one-at-a-time plain float32 prediction, up to a few boundary pixels."""
    fast, _ = polyp.predict.Predictor.from_folder(checkpoint)
    plain, _ = polyp.predict.Predictor.from_folder(checkpoint, precision="fp32")
    plain.model = plain.model.to(memory_format=torch.contiguous_format)
    inputs = sorted((photos / "images").iterdir())
    rows_fast = polyp.predict.predict_files(fast, inputs, tmp_path / "fast", photos / "masks", batch_size=2)
    rows_plain = polyp.predict.predict_files(plain, inputs, tmp_path / "plain", photos / "masks", batch_size=1)
    assert [r["stem"] for r in rows_fast] == [p.stem for p in inputs] == [r["stem"] for r in rows_plain]
    for stem in (p.stem for p in inputs):
        a = cv2.imread(str(tmp_path / "fast" / f"{stem}_mask.png"), cv2.IMREAD_UNCHANGED)
        b = cv2.imread(str(tmp_path / "plain" / f"{stem}_mask.png"), cv2.IMREAD_UNCHANGED)
        assert (a != b).mean() < 0.02
    probs_fast = fast.probabilities([polyp.predict.read_image(inputs[0])])[0]
    probs_plain = plain.probabilities([polyp.predict.read_image(inputs[0])])[0]
    assert np.abs(probs_fast - probs_plain).max() < 0.05


def test_predict_scores_true_masks_saved_as_0_and_1(checkpoint, photos, tmp_path, capsys):
    """Truth masks holding 0/1 are read as polyp where they hold 1: the model's own masks saved that way score
    Dice 1, where reading them at 128 would find no polyp and score 0."""
    first = tmp_path / "first"
    assert polyp.predict.main(["--model", str(checkpoint), "--input", str(photos / "images"), "--out", str(first)]) == 0
    truths = tmp_path / "truths"
    truths.mkdir()
    for predicted in first.glob("*_mask.png"):
        mask = cv2.imread(str(predicted), cv2.IMREAD_GRAYSCALE)
        assert mask.max() == 255, "the untrained model should predict some polyp pixels"
        assert cv2.imwrite(str(truths / predicted.name), (mask // 255).astype(np.uint8))
    capsys.readouterr()

    code = polyp.predict.main(["--model", str(checkpoint), "--input", str(photos / "images"),
                               "--out", str(tmp_path / "scored"), "--masks", str(truths)])

    assert code == 0
    printed = capsys.readouterr().out
    assert f"true masks in {truths}: 0/1 (threshold 1)" in printed
    dices = [float(d) for d in re.findall(r"  dice (\S+)  iou", printed)]
    assert dices == [1.0, 1.0, 1.0]


def test_binary_mask_counts_the_threshold_itself_as_polyp():
    probability = np.array([[0.0, 0.4999], [0.5, 1.0]], np.float32)

    assert binary_mask(probability).tolist() == [[0, 0], [1, 1]]
    assert binary_mask(probability, threshold=0.9).tolist() == [[0, 0], [0, 1]]


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_written_images_read_back_as_rgb(suffix, tmp_path):
    image = np.zeros((8, 8, 3), np.uint8)
    image[..., 0] = 200  # red: a channel swap would show

    written = write_image(tmp_path / f"red{suffix}", image)

    back = cv2.cvtColor(cv2.imread(str(written)), cv2.COLOR_BGR2RGB)
    assert np.abs(back.astype(int) - image).max() <= 2  # JPEG at quality 95 is near-exact on a flat colour


def test_predict_masks_of_the_sheets_match_a_plain_float32_forward_pass(checkpoint, synthetic_data):
    model, _ = load_checkpoint(checkpoint)
    images = synthetic_data.test
    with torch.no_grad():
        logits = model(Normalizer(torch.device("cpu"), channels_last=False)(
            torch.from_numpy(images.images).permute(0, 3, 1, 2)))
    expected = (torch.sigmoid(logits)[:, 0] >= 0.5).numpy().astype(np.uint8)

    masks = predict_masks(model, images)

    assert masks.dtype == np.uint8 and masks.shape == expected.shape
    assert np.array_equal(masks, expected)


def test_predict_threshold_sets_which_pixels_are_polyp(checkpoint, photos, tmp_path, capsys):
    image = photos / "images" / "synth_0000.jpg"
    if not image.exists():
        image = next((photos / "images").iterdir())
    areas = {}
    for threshold in ("0.01", "0.99"):
        out = tmp_path / threshold
        assert polyp.predict.main(["--model", str(checkpoint), "--input", str(image), "--out", str(out),
                                   "--threshold", threshold]) == 0
        areas[threshold] = int((cv2.imread(str(out / f"{image.stem}_mask.png"), cv2.IMREAD_UNCHANGED) > 0).sum())
    assert areas["0.01"] > areas["0.99"]
    assert polyp.predict.main(["--model", str(checkpoint), "--input", str(image), "--out", str(tmp_path / "x"),
                               "--threshold", "1.5"]) == 2
    assert "--threshold: 1.5 must be between 0 and 1" in capsys.readouterr().err
