"""Several training sets, groups, external validation sets, the objective, and the robustness techniques."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import shutil

import numpy as np
import pytest
import torch

from polyp.config import ConfigError, TrainConfig, parse_config
from polyp.data import (
    DataError,
    DataSource,
    Split,
    build_augmentation,
    prepare_data,
    split_groups,
    write_synthetic,
)
from polyp.data.sources import read_groups, training_sources, validation_sources
from polyp.data.splits import limited_stems, make_split
from polyp.losses import StructureLoss, build_loss
from polyp.models import build_model
from polyp.selection import objective_value
from polyp.train import fit
from polyp.train.__main__ import main as train_main
from polyp.train.loop import TrainStep


@pytest.fixture(scope="module")
def centres(tmp_path_factory):
    """Three synthetic 32 px "centres" with different images, and a groups file of b (4 frames per group)."""
    root = tmp_path_factory.mktemp("centres")
    for seed, name in enumerate(("a", "b", "c"), start=1):
        write_synthetic(root / name, count=16, size=32, seed=seed)
    stems = sorted(path.stem for path in (root / "b" / "images").iterdir())
    with open(root / "b-groups.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["stem", "sequence"])
        writer.writerows([stem, index // 4] for index, stem in enumerate(stems))
    return root


def groups_of(path) -> dict[str, str]:
    with open(path) as handle:
        return {row["stem"]: row["sequence"] for row in csv.DictReader(handle)}


def test_named_sets_take_their_test_lists_and_groups():
    sources = training_sources(["kvasir=/d/k", "/d/cvc-clinicdb"], ["kvasir=/d/test.txt"],
                               ["cvc-clinicdb=/d/seq.csv"])
    assert sources == [DataSource("kvasir", "/d/k", "/d/test.txt", ""),
                       DataSource("cvc-clinicdb", "/d/cvc-clinicdb", "", "/d/seq.csv")]
    assert training_sources(["/d/kvasir-seg"], ["/d/test.txt"], [])[0].test_list == "/d/test.txt"  # one set: plain


@pytest.mark.parametrize("data, tests, groups, val, expected", [
    (["k=/a", "k=/b"], [], [], [], "the set name 'k' is given twice"),
    (["k=/a"], [], [], ["k=/b"], "'k' is also a --data set"),
    (["k=/a", "c=/b"], ["/t.txt"], [], [], "several sets (k, c); write --test-list NAME=FILE"),
    (["k=/a"], ["x=/t.txt"], [], [], "no set is named 'x'"),
    (["k=/a"], [], ["x=/g.csv"], [], "no set is named 'x'"),
    (["mean=/a"], [], [], [], "'mean' cannot name a data set"),
    (["k="], [], [], [], "nothing after '='"),
])
def test_bad_set_names_are_refused_with_the_name(data, tests, groups, val, expected):
    with pytest.raises(DataError, match=None) as raised:
        training_sources(data, tests, groups, val)
    assert expected in str(raised.value)


def test_a_groups_file_may_name_an_external_set():
    assert validation_sources(["c=/c"], ["c=/g.csv"], ["k"]) == [DataSource("c", "/c", "", "/g.csv")]


def test_a_groups_file_that_puts_a_stem_in_two_groups_is_refused_with_its_line(tmp_path):
    path = tmp_path / "g.csv"
    path.write_text("stem,sequence\n1,1\n2,1\n1,2\n")
    with pytest.raises(DataError, match=r"g.csv, line 4: stem '1' is in two groups \('1' and '2'\)"):
        read_groups(path, ["1", "2"], "cvc")


def test_a_groups_file_that_matches_no_image_is_refused(tmp_path):
    path = tmp_path / "g.csv"
    path.write_text("stem,sequence\nx1,1\nx2,1\n")
    with pytest.raises(DataError, match="none of its 2 stems .* is an image of set 'cvc'"):
        read_groups(path, ["1", "2"], "cvc")


def test_images_a_groups_file_leaves_out_are_groups_of_their_own(tmp_path):
    path = tmp_path / "g.csv"
    path.write_text("stem,sequence\n1.png,7\n2,7\n")
    assert read_groups(path, ["1", "2", "3"], "cvc") == {"1": "7", "2": "7", "3": "image:3"}


@pytest.mark.parametrize("seed", range(6))
def test_a_group_split_keeps_every_group_on_one_side(seed):
    stems = [f"{i:03d}" for i in range(60)]
    groups = {stem: str(i // 5) for i, stem in enumerate(stems)}
    split = make_split(stems, seed, 0.2, 0.2, groups=groups)
    sides = {}
    for side in ("train", "val", "test"):
        for stem in getattr(split, side):
            sides.setdefault(groups[stem], set()).add(side)
    assert all(len(found) == 1 for found in sides.values())
    assert sorted(split.train + split.val + split.test) == stems
    assert len(split.val) >= 12 and len(split.test) >= 12 and "by group" in split.method


def test_a_limited_validation_set_takes_whole_groups_by_seed():
    stems = [f"{i:03d}" for i in range(40)]
    groups = {stem: str(i // 8) for i, stem in enumerate(stems)}
    chosen = limited_stems(stems, 16, seed=3, groups=groups)
    assert len(chosen) == 16 and len({groups[s] for s in chosen}) == 2
    assert chosen == limited_stems(stems, 16, seed=3, groups=groups)
    assert limited_stems(stems, 0, seed=3) == stems


def test_two_training_sets_are_split_on_their_own_and_recorded(centres, tmp_path):
    sources = [DataSource("a", str(centres / "a")), DataSource("b", str(centres / "b"), groups=str(centres / "b-groups.csv"))]
    data = prepare_data(sources, 32, seed=0, val_fraction=0.25, test_fraction=0.25, cache=False)

    assert len(data.train) + len(data.val) + len(data.test) == 32
    assert all(stem.split("/")[0] in ("a", "b") for stem in data.train.stems + data.val.stems)
    assert set(data.split.sets) == {"a", "b"} and data.split.sets["b"]["method"].endswith("by group")
    groups = groups_of(centres / "b-groups.csv")
    b_val = {groups[s] for s in data.split.sets["b"]["val"]}
    assert not b_val & {groups[s] for s in data.split.sets["b"]["train"]}  # no video on both sides
    assert data.val_parts().keys() == {"a", "b"}
    line = data.describe(32)
    assert line.startswith("data a ") and "; b " in line and "4 val" in line

    data.split.save(tmp_path / "split.json")
    again = prepare_data(sources, 32, split=Split.load(tmp_path / "split.json"), cache=False)
    assert again.val.stems == data.val.stems and again.train.stems == data.train.stems


def test_a_reused_split_of_other_sets_is_refused(centres, tmp_path):
    sources = [DataSource("a", str(centres / "a")), DataSource("b", str(centres / "b"))]
    split = prepare_data(sources, 32, cache=False).split
    with pytest.raises(DataError, match="the split holds the sets a, b, this run has a, c"):
        prepare_data([sources[0], DataSource("c", str(centres / "c"))], 32, split=split, cache=False)


def test_an_external_set_sharing_an_image_with_a_training_set_is_refused(centres, tmp_path):
    leaky = tmp_path / "leaky"
    shutil.copytree(centres / "c", leaky)
    shutil.copy(centres / "a" / "images" / "synth_0003.jpg", leaky / "images" / "copied.jpg")
    shutil.copy(centres / "a" / "masks" / "synth_0003.png", leaky / "masks" / "copied.png")
    with pytest.raises(DataError) as raised:
        prepare_data(DataSource("a", str(centres / "a")), 32, external=[DataSource("leaky", str(leaky))], cache=False)
    message = str(raised.value)
    assert "--val-data leaky: 1 image(s) are also in training set 'a'" in message
    assert "copied.jpg" in message and "synth_0003.jpg" in message


def test_an_objective_that_names_no_set_is_refused_before_anything_is_read(centres):
    with pytest.raises(DataError, match="objective 'cvc' names no validation set; use one of mean, worst, a, c"):
        prepare_data(DataSource("a", str(centres / "a")), 32, external=[DataSource("c", str(centres / "c"))],
                     objective="cvc")


def test_objective_values():
    scores = {"val": 0.9, "a": 0.95, "c": 0.6, "d": 0.7}
    assert objective_value("mean", scores, ["c", "d"]) == pytest.approx((0.9 + 0.6 + 0.7) / 3)
    assert objective_value("worst", scores, ["c", "d"]) == 0.6
    assert objective_value("a", scores, ["c", "d"]) == 0.95
    assert objective_value("mean", {"val": math.nan, "c": 0.6}, ["c"]) == 0.6  # no in-domain images


def test_external_sets_are_scored_every_epoch_and_pick_the_best_epoch(centres, tiny_config):
    data = prepare_data(DataSource("a", str(centres / "a")), 32, val_fraction=0.25, test_fraction=0.25, cache=False,
                        external=[DataSource("c", str(centres / "c"))], val_limit=6, objective="mean")
    assert len(data.external["c"]) == 6 and data.split.external["c"]["stems"] == data.external["c"].stems

    result = fit(dataclasses.replace(tiny_config, epochs=3, lr=1e-2), data, evaluate_test=False)

    for row in result.history:
        assert {"val_c_mdice", "val_c_miou", "objective"} <= set(row)
        assert row["objective"] == pytest.approx((row["val_mdice"] + row["val_c_mdice"]) / 2)
    best = max(result.history, key=lambda row: row["objective"])
    assert result.best_epoch == best["epoch"] and result.objective == pytest.approx(best["objective"])
    assert result.best_val["c_mdice"] == pytest.approx(best["val_c_mdice"])


def test_only_an_external_set_can_choose_the_epoch(centres, tiny_config):
    data = prepare_data(DataSource("a", str(centres / "a")), 32, val_fraction=0, test_fraction=0.25, cache=False,
                        external=[DataSource("c", str(centres / "c"))], objective="c")
    result = fit(dataclasses.replace(tiny_config, epochs=2, early_stop_patience=1), data, evaluate_test=False)
    assert all(math.isnan(row["val_mdice"]) and row["objective"] == row["val_c_mdice"] for row in result.history)


def test_the_structure_loss_is_pranets_weighted_bce_plus_weighted_iou():
    torch.manual_seed(0)
    logits, mask = torch.randn(2, 1, 40, 40), (torch.rand(2, 1, 40, 40) > 0.6).float()
    weight = 1 + 5 * torch.abs(torch.nn.functional.avg_pool2d(mask, 31, 1, 15) - mask)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, mask, reduction="none")
    wbce = (weight * bce).sum((2, 3)) / weight.sum((2, 3))
    prob = torch.sigmoid(logits)
    inter, union = (prob * mask * weight).sum((2, 3)), ((prob + mask) * weight).sum((2, 3))
    expected = (wbce + 1 - (inter + 1) / (union - inter + 1)).mean()
    assert StructureLoss()(logits, mask).item() == pytest.approx(expected.item(), rel=1e-5)
    assert build_loss("bce+0.5*structure")(logits, mask).item() > 0
    perfect = torch.where(mask > 0, 20.0, -20.0)
    assert StructureLoss()(perfect, mask).item() < 1e-3


@pytest.mark.parametrize("size, expected", [(128, {96, 128, 160}), (192, {160, 192, 256}), (352, {256, 352, 448}),
                                            (80, {64, 80, 96})])
def test_multi_scale_trains_batches_at_three_sizes_as_pranet_rounds_them(tiny_config, size, expected):
    cfg = dataclasses.replace(tiny_config, image_size=size, encoder_depth=3 if size % 32 else 5, multi_scale=True)
    step = TrainStep(cfg, build_model(cfg), torch.device("cpu"), steps_per_epoch=10)
    masks = (torch.rand(1, 1, size, size) > 0.5).float()
    seen = [step.rescaled(torch.zeros(1, 3, size, size), masks)[1] for _ in range(40)]
    assert {mask.shape[-1] for mask in seen} == expected
    assert all(set(mask.unique().tolist()) <= {0.0, 1.0} for mask in seen)  # masks stay binary
    plain = TrainStep(tiny_config, build_model(tiny_config), torch.device("cpu"), steps_per_epoch=10)
    assert plain.rescaled(torch.zeros(1, 3, 32, 32), torch.zeros(1, 1, 32, 32))[0].shape[-1] == 32


def test_a_multi_scale_photometric_structure_run_trains(tiny_config, synthetic_data):
    cfg = dataclasses.replace(tiny_config, image_size=32, multi_scale=True, photometric="strong", loss="structure",
                              epochs=2)
    result = fit(cfg, synthetic_data, evaluate_test=False)
    assert result.status == "completed" and all(math.isfinite(row["train_loss"]) for row in result.history)


def test_photometric_augmentation_changes_pixels_never_masks():
    rng = np.random.default_rng(0)
    image, mask = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8), (rng.random((32, 32)) > 0.5).astype(np.uint8)
    transform = build_augmentation("none", seed=0, photometric="strong")
    outs = [transform(image=image, mask=mask) for _ in range(8)]
    assert any(not np.array_equal(out["image"], image) for out in outs)
    assert all(np.array_equal(out["mask"], mask) for out in outs)
    assert build_augmentation("none", photometric="none") is None
    with pytest.raises(ConfigError, match="photometric: 'extreme' is not one of none, light, strong"):
        parse_config({"photometric": "extreme"})


def test_without_validation_the_averaged_weights_of_the_last_epochs_are_kept(tiny_config, synthetic_dir):
    data = prepare_data(synthetic_dir, 32, val_fraction=0, test_fraction=0.25, cache=False)
    result = fit(dataclasses.replace(tiny_config, epochs=3, swa_epochs=2), data, evaluate_test=False)
    assert result.averaged == "epochs 2-3" and result.best_epoch == 3


def test_averaged_weights_are_kept_only_when_they_validate_better(tiny_config, synthetic_data):
    result = fit(dataclasses.replace(tiny_config, epochs=3, swa_epochs=3, lr=1e-2), synthetic_data, evaluate_test=False)
    best_epoch = max(row["objective"] for row in result.history)
    if result.averaged:
        assert result.objective > best_epoch
    else:
        assert result.objective == best_epoch


def test_new_training_fields_replay_from_a_csv_row():
    cfg = parse_config({"multi_scale": "true", "photometric": "light", "swa_epochs": "4", "loss": "bce+structure"})
    assert (cfg.multi_scale, cfg.photometric, cfg.swa_epochs, cfg.loss) == (True, "light", 4, "bce+structure")
    assert TrainConfig().multi_scale is False and TrainConfig().swa_epochs == 0  # old configs train as before


def test_polyp_train_trains_on_two_sets_and_scores_an_external_one(centres, tmp_path, capsys):
    out = tmp_path / "run"
    code = train_main(["--data", f"a={centres / 'a'}", "--data", f"b={centres / 'b'}",
                       "--groups", f"b={centres / 'b-groups.csv'}", "--val-data", f"c={centres / 'c'}",
                       "--val-limit", "8", "--objective", "worst", "--arch", "linknet", "--encoder", "resnet18",
                       "--encoder-depth", "3", "--image-size", "32", "--epochs", "1", "--batch-size", "4",
                       "--threads", "1", "--device", "cpu", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    assert "data a " in printed and "validation only: c " in printed and "8 scored" in printed
    assert "objective: worst" in printed
    with open(out / "history.csv") as handle:
        header = next(csv.reader(handle))
    assert {"val_a_mdice", "val_b_mdice", "val_c_mdice", "objective"} <= set(header)
    split = json.loads((out / "split.json").read_text())
    assert set(split["sets"]) == {"a", "b"} and len(split["external"]["c"]["stems"]) == 8


def test_polyp_train_refuses_an_objective_naming_no_set_before_training(centres, tmp_path, capsys):
    code = train_main(["--data", f"a={centres / 'a'}", "--objective", "cvc", "--image-size", "32",
                       "--out", str(tmp_path / "run")])
    assert code == 2 and "objective 'cvc' names no validation set" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_nan_score_never_beats_a_number():
    from polyp.train.loop import better
    assert better(0.5, math.nan) and not better(math.nan, 0.5) and not better(math.nan, math.nan)
    assert better(0.6, 0.5) and not better(0.5, 0.5)


def test_an_objective_naming_a_training_set_without_validation_images_is_refused(centres):
    with pytest.raises(DataError, match="objective 'a': set 'a' has no validation images"):
        prepare_data(DataSource("a", str(centres / "a")), 32, val_fraction=0, cache=False,
                     external=[DataSource("c", str(centres / "c"))], objective="a")


def test_cross_validation_folds_deal_whole_groups(centres):
    sources = [DataSource("a", str(centres / "a")), DataSource("b", str(centres / "b"), groups=str(centres / "b-groups.csv"))]
    data = prepare_data(sources, 32, val_fraction=0.25, test_fraction=0.25, cache=False)
    groups = split_groups(sources, data.split)
    split = data.split.with_folds(3, seed=1, groups=groups)
    fold_of = {stem: index for index, fold in enumerate(split.folds) for stem in fold}
    by_group: dict[str, set[int]] = {}
    for stem, group in groups.items():
        by_group.setdefault(group, set()).add(fold_of[stem])
    assert all(len(folds) == 1 for folds in by_group.values())
    assert sorted(fold_of) == sorted(data.split.train + data.split.val)


def test_a_reused_split_with_another_validation_limit_is_refused(centres):
    external = [DataSource("c", str(centres / "c"))]
    split = prepare_data(DataSource("a", str(centres / "a")), 32, cache=False, external=external, val_limit=6).split
    with pytest.raises(DataError, match="the split scores 6 images of validation set 'c', this run asks for 8"):
        prepare_data(DataSource("a", str(centres / "a")), 32, split=split, cache=False, external=external, val_limit=8)
