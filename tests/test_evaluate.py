"""`python -m polyp.evaluate`: data set layouts, ensembles, test-time augmentation and the printed table."""

from __future__ import annotations

import csv
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import polyp.evaluate.__main__ as evaluate
from polyp.checkpoint import save_checkpoint
from polyp.config import TrainConfig
from polyp.data import write_synthetic
from polyp.data.folder import scan_pairs
from polyp.evaluate.datasets import named_folders
from polyp.evaluate.scoring import ensemble_probabilities
from polyp.metrics import dice_iou
from polyp.models import build_model
from polyp.predict import Predictor

SIZE = 48  # the images' own side: not the models' 32 px input


def _checkpoint(folder: Path, seed: int) -> Path:
    cfg = TrainConfig(arch="linknet", encoder="resnet18", encoder_depth=3, image_size=32)
    torch.manual_seed(seed)
    return save_checkpoint(build_model(cfg).eval(), cfg, folder / f"model-{seed}")


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> list[Path]:
    """Two untrained LinkNet checkpoints (different seeds)."""
    folder = tmp_path_factory.mktemp("models")
    return [_checkpoint(folder, 0), _checkpoint(folder, 1)]


@pytest.fixture(scope="module")
def test_sets(tmp_path_factory) -> Path:
    """A folder of data sets in three layouts, as PraNet's TestDataset/ holds several."""
    root = tmp_path_factory.mktemp("TestDataset")
    write_synthetic(root / "Kvasir", count=4, size=SIZE, seed=1)  # images/ + masks/
    pranet = write_synthetic(root / "PraNetTrain", count=3, size=SIZE, seed=2)
    (pranet / "images").rename(pranet / "image")
    (pranet / "masks").rename(pranet / "mask")
    polypgen = write_synthetic(root / "PolypGen", count=3, size=SIZE, seed=3)  # <stem>_mask.jpg masks
    for mask in sorted((polypgen / "masks").iterdir()):
        cv2.imwrite(str(mask.with_name(f"{mask.stem}_mask.jpg")), cv2.imread(str(mask), cv2.IMREAD_GRAYSCALE))
        mask.unlink()
    cvc = write_synthetic(root / "CVC-ClinicDB", count=2, size=SIZE, seed=4)  # Original/ + Ground Truth/, TIFF
    for folder, target in (("images", "Original"), ("masks", "Ground Truth")):
        (cvc / target).mkdir()
        for path in sorted((cvc / folder).iterdir()):
            cv2.imwrite(str(cvc / target / f"{path.stem}.tif"), cv2.imread(str(path), cv2.IMREAD_UNCHANGED))
        shutil.rmtree(cvc / folder)
    return root


def test_a_folder_of_data_sets_gives_one_per_subfolder_in_any_layout(test_sets: Path):
    found = named_folders([str(test_sets), f"again={test_sets / 'Kvasir'}"])
    assert [name for name, _ in found] == ["CVC-ClinicDB", "Kvasir", "PolypGen", "PraNetTrain", "again"]
    assert [len(scan_pairs(folder).pairs) for _, folder in found] == [2, 4, 3, 3, 4]


def test_the_printed_mdice_is_the_mean_of_independent_per_image_dice(models, test_sets, tmp_path, capsys):
    out = tmp_path / "evaluation"
    assert evaluate.main(["--model", str(models[0]), "--data", f"kvasir={test_sets / 'Kvasir'}", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    mdice = float(re.search(r"^\s*kvasir\s+4\s+(\S+)", printed, re.MULTILINE).group(1))
    predictor, _ = Predictor.from_folder(models[0])
    dices = []
    for image_path in sorted((test_sets / "Kvasir" / "images").iterdir()):
        image = cv2.cvtColor(cv2.imread(str(image_path)), cv2.COLOR_BGR2RGB)
        truth = cv2.imread(str(test_sets / "Kvasir" / "masks" / f"{image_path.stem}.png"), cv2.IMREAD_GRAYSCALE) >= 128
        predicted = predictor.probabilities([image])[0] >= 0.5
        dices.append(dice_iou(torch.from_numpy(predicted), torch.from_numpy(truth))[0])
    assert mdice == pytest.approx(np.mean(dices), abs=1e-4)
    assert {path.name for path in out.iterdir()} == {"summary.csv", "summary.md", "per_image.csv", "worst-kvasir.png"}
    with (out / "per_image.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["stem"] for row in rows] == [f"synth_{i:04d}" for i in range(4)]
    assert {"dataset", "width", "height", "polyp_area", "dice", "wfm", "sm", "em_max", "mae", "hd95"} <= set(rows[0])
    assert (out / "summary.md").read_text().startswith("| data set | images | mDice | mIoU | Fβw | Sα |")


def test_several_data_sets_get_a_mean_row(models, test_sets, tmp_path, capsys):
    assert evaluate.main(["--model", str(models[0]), "--data", str(test_sets), "--out", str(tmp_path / "e")]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"^\s*mean\s+12\s", printed, re.MULTILINE)
    assert len(list((tmp_path / "e").glob("worst-*.png"))) == 4


def test_an_ensemble_averages_the_models_probabilities(models, test_sets):
    image = cv2.cvtColor(cv2.imread(str(sorted((test_sets / "Kvasir" / "images").iterdir())[0])), cv2.COLOR_BGR2RGB)
    predictors = [Predictor.from_folder(folder)[0] for folder in models]
    single = [predictor.probabilities([image])[0] for predictor in predictors]
    assert not np.allclose(single[0], single[1])
    both = ensemble_probabilities(predictors, [image], "none")[0]
    assert np.allclose(both, (single[0] + single[1]) / 2, atol=1e-6)


def _square_image() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)


def test_d4_tta_turns_with_its_input(models):
    predictor = Predictor.from_folder(models[0], precision="fp32")[0]
    image = _square_image()
    base = predictor.probabilities([image], "d4")[0]
    for turned, back in ((np.fliplr, np.fliplr), (np.flipud, np.flipud), (np.rot90, lambda p: np.rot90(p, -1))):
        again = predictor.probabilities([np.ascontiguousarray(turned(image))], "d4")[0]
        assert np.allclose(back(again), base, atol=1e-5), "a flipped input gives the flipped mask"
    assert not np.allclose(predictor.probabilities([image], "none")[0], base, atol=1e-5)


def test_flip_tta_is_the_mean_of_the_image_and_its_flips(models):
    predictor = Predictor.from_folder(models[0], precision="fp32")[0]
    image = _square_image()
    plain = lambda picture: predictor.probabilities([np.ascontiguousarray(picture)])[0]  # noqa: E731
    expected = (plain(image) + np.fliplr(plain(np.fliplr(image))) + np.flipud(plain(np.flipud(image)))) / 3
    assert np.allclose(predictor.probabilities([image], "flip")[0], expected, atol=1e-6)


@pytest.mark.parametrize("argv, words", [
    (["--data", "/nonexistent/sets"], "/nonexistent/sets is not a folder"),
    (["--threshold", "1.5"], "--threshold 1.5"),
    (["--test-list", "/nonexistent/list.txt"], "test list does not exist"),
])
def test_bad_input_is_a_one_line_error(models, test_sets, tmp_path, capsys, argv, words):
    base = {"--model": str(models[0]), "--data": str(test_sets / "Kvasir"), "--out": str(tmp_path / "e")}
    for flag, value in zip(argv[::2], argv[1::2], strict=True):
        base[flag] = value
    assert evaluate.main([part for pair in base.items() for part in pair]) == 2
    assert words in capsys.readouterr().err


def test_a_test_list_scores_only_its_stems(models, test_sets, tmp_path, capsys):
    listed = tmp_path / "list.txt"
    listed.write_text("synth_0001\nsynth_0003.jpg\n")
    folder = tmp_path / "kvasir"
    shutil.copytree(test_sets / "Kvasir", folder)
    assert evaluate.main(["--model", str(models[0]), "--data", str(folder), "--test-list", str(listed),
                          "--out", str(tmp_path / "e")]) == 0
    assert re.search(r"^\s*kvasir\s+2\s", capsys.readouterr().out, re.MULTILINE)
