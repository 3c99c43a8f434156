"""`python -m search.export`: the best trial as a checkpoint folder, a pruned one with --retrain, and ONNX."""

from __future__ import annotations

import io
import json
import re
from contextlib import redirect_stdout

import pytest
import segmentation_models_pytorch as smp
import torch
from fake_study import FakeStudy, shared_study
from optuna.trial import TrialState

from polyp.checkpoint import load_checkpoint
from polyp.data import write_synthetic
from polyp.predict import main as predict_main
from search.export import main


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> FakeStudy:
    study = shared_study(tmp_path_factory)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("POLYP_CACHE", str(study.cache))
        yield study


@pytest.fixture(scope="module")
def best_export(study, tmp_path_factory):
    """The best trial exported with --onnx; yields the folder and the command's output."""
    out = tmp_path_factory.mktemp("export") / "best"
    printed = io.StringIO()
    with redirect_stdout(printed):
        code = main(["--study", str(study.toml), "--run-dir", str(study.run_dir), "--out", str(out), "--onnx"])
    assert code == 0, printed.getvalue()
    return {"out": out, "stdout": printed.getvalue()}


def test_the_export_loads_with_smp_and_polyp_alike(best_export, study):
    out = best_export["out"]
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.onnx", "model.safetensors", "training.json"]
    ours, info = load_checkpoint(out)
    theirs = smp.from_pretrained(str(out)).eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x))
    training = json.loads((out / "training.json").read_text())
    assert training["study"] == "mini" and training["trial"] == study.best
    assert training["train_config"]["arch"] == "linknet" and info.image_size == 64
    assert {"val", "test"} <= set(training["metrics"]) and 0 < training["metrics"]["test"]["mdice"] < 1
    assert training["preprocessing"]["image_size"] == 64 and len(training["preprocessing"]["mean"]) == 3


def test_polyp_predict_uses_the_export_as_it_is(best_export, tmp_path, capsys):
    data = write_synthetic(tmp_path / "data", count=2, size=64)
    code = predict_main(["--model", str(best_export["out"]), "--input", str(data / "images"), "--masks", str(data / "masks"),
                         "--out", str(tmp_path / "predicted"), "--gradcam"])
    assert code == 0
    assert "mean over 2 images: mdice" in capsys.readouterr().out
    for suffix in ("mask", "overlay", "gradcam"):
        assert (tmp_path / "predicted" / f"synth_0000_{suffix}.png").stat().st_size > 100


def test_the_onnx_model_matches_pytorch(best_export):
    match = re.search(r"max \|onnxruntime - pytorch\| = (\S+)", best_export["stdout"])
    assert match, best_export["stdout"]
    assert float(match.group(1)) < 1e-3


def test_a_pruned_trial_without_checkpoint_needs_retrain(study, tmp_path, capsys):
    pruned = study.numbers(TrialState.PRUNED)[0]
    out = tmp_path / "pruned"
    code = main(["--study", str(study.toml), "--run-dir", str(study.run_dir), "--trial", str(pruned), "--out", str(out)])
    assert code == 2
    error = capsys.readouterr().err
    assert f"trial {pruned} of study mini (pruned) kept no checkpoint" in error and "--retrain" in error
    assert not out.exists()


def test_retrain_trains_the_pruned_config_again_and_exports_it(study, tmp_path, capsys):
    pruned = study.numbers(TrialState.PRUNED)[0]
    out = tmp_path / "retrained"
    code = main(["--study", str(study.toml), "--run-dir", str(study.run_dir), "--trial", str(pruned), "--out", str(out),
                 "--retrain", "--epochs", "1", "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    model, info = load_checkpoint(out)
    training = json.loads((out / "training.json").read_text())
    assert training["trial"] == pruned and training["trial_state"] == "PRUNED"
    assert training["source"].startswith("retrained") and info.config.epochs == 1
    assert training["metrics"]["val"]["mdice"] >= 0


@pytest.mark.parametrize("args, message", [
    (["--trial", "99"], "has no trial 99"),
    (["--out", "{run_dir}"], "would replace the run folder"),
])
def test_bad_requests_are_refused(study, tmp_path, capsys, args, message):
    args = [a.format(run_dir=study.run_dir) for a in args]
    out = [] if "--out" in args else ["--out", str(tmp_path / "x")]
    assert main(["--study", str(study.toml), "--run-dir", str(study.run_dir), *out, *args]) == 2
    assert message in capsys.readouterr().err


def test_an_occupied_folder_is_not_replaced(study, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["--study", str(study.toml), "--run-dir", str(study.run_dir), "--out", str(tmp_path)]) == 2
    assert "holds other files (notes.txt)" in capsys.readouterr().err
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_our_attention_unet_exports_to_onnx_too(tmp_path):
    from polyp.config import TrainConfig
    from polyp.models import build_model
    from polyp.onnx_export import export_onnx, onnx_max_difference

    model = build_model(TrainConfig(arch="attention_unet", encoder_depth=3, image_size=32)).eval()
    path = export_onnx(model, 32, tmp_path / "model.onnx")
    assert onnx_max_difference(model, path, 32) < 1e-4


def test_the_test_split_is_scored_as_polyp_evaluate_scores_it(best_export, study, tmp_path, capsys):
    from polyp.data import Split, resolve_data_dir
    from polyp.evaluate.__main__ import main as evaluate_main

    own = json.loads((best_export["out"] / "training.json").read_text())["metrics"]["test_own_size"]
    assert own["images"] > 0 and {"dice", "iou", "wfm", "sm", "em_mean", "em_max", "mae", "hd95"} <= set(own)
    assert f"mDice {own['dice']:.4f}" in best_export["stdout"]
    split = Split.load(study.run_dir / "mini" / "split.json")
    listed = tmp_path / "test.txt"
    listed.write_text("\n".join(split.test))
    folder = resolve_data_dir("synthetic", 20, synthetic_size=64)  # the mini study's synthetic set
    assert evaluate_main(["--model", str(best_export["out"]), "--data", f"test={folder}", "--test-list", str(listed),
                          "--out", str(tmp_path / "evaluation"), "--batch-size", "8"]) == 0
    row = re.search(r"^\s*test\s+(\d+)\s+(\S+)\s+(\S+)", capsys.readouterr().out, re.MULTILINE)
    assert int(row.group(1)) == own["images"] and float(row.group(2)) == pytest.approx(own["dice"], abs=1e-4)


def test_the_export_records_its_latency_per_frame_with_both_runtimes(best_export):
    training = json.loads((best_export["out"] / "training.json").read_text())
    latency = training["latency"]
    assert latency["torch_ms"] > 0 and latency["onnx_ms"] > 0  # model.onnx was written: ONNX Runtime timed it
    assert latency["image_size"] == training["train_config"]["image_size"] and latency["device"] == "cpu"
    assert f"latency on this machine: {latency['torch_ms']:.1f} ms per frame with PyTorch" in best_export["stdout"]


def test_a_latency_limit_exports_the_best_trial_within_it_or_names_the_fastest(study, tmp_path, capsys):
    args = ["--study", str(study.toml), "--run-dir", str(study.run_dir)]
    assert main([*args, "--out", str(tmp_path / "fast"), "--max-latency-ms", "1e6"]) == 0
    printed = capsys.readouterr().out
    assert f"exported trial {study.best} of study" in printed  # every trial is within 1e6 ms
    assert main([*args, "--out", str(tmp_path / "none"), "--max-latency-ms", "0.0001"]) == 2
    assert "no complete trial of study" in capsys.readouterr().err and not (tmp_path / "none").exists()
    assert main([*args, "--out", str(tmp_path / "both"), "--max-latency-ms", "5", "--trial", "0"]) == 2
    assert "--trial names the trial; --max-latency-ms picks one" in capsys.readouterr().err
