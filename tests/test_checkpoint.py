"""Checkpoint folders: round trips, smp interoperability, refusals that name the problem, no pickle, atomic writes."""

from __future__ import annotations

import json
import pickle
import shutil

import pytest
import segmentation_models_pytorch as smp
import torch

import polyp.checkpoint
from polyp.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from polyp.config import TrainConfig
from polyp.models import build_model

SMP_CONFIG = TrainConfig(arch="linknet", encoder="resnet18", encoder_depth=3, image_size=32)
ATTENTION_CONFIG = TrainConfig(arch="attention_unet", encoder_depth=3, image_size=32)


def trained_looking_model(cfg: TrainConfig, seed: int = 0) -> torch.nn.Module:
    """A seeded model whose batch-norm statistics moved off their defaults, in eval mode."""
    torch.manual_seed(seed)
    model = build_model(cfg)
    with torch.no_grad():
        model.train()(torch.randn(2, 3, 32, 32) * 2 + 1)
    return model.eval()


def outputs(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.linspace(-2, 2, 3 * 32 * 32).view(1, 3, 32, 32))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Two saved checkpoints (linknet and attention_unet) and the models they hold."""
    root = tmp_path_factory.mktemp("checkpoints")
    models = {"smp": trained_looking_model(SMP_CONFIG), "attention": trained_looking_model(ATTENTION_CONFIG)}
    save_checkpoint(models["smp"], SMP_CONFIG, root / "smp", {"metrics": {"val": {"mdice": 0.5}}})
    save_checkpoint(models["attention"], ATTENTION_CONFIG, root / "attention")
    return root, models


@pytest.mark.parametrize(("name", "cfg"), [("smp", SMP_CONFIG), ("attention", ATTENTION_CONFIG)])
def test_round_trip_gives_identical_outputs(saved, name, cfg):
    root, models = saved

    model, info = load_checkpoint(root / name)

    assert sorted(p.name for p in (root / name).iterdir()) == ["config.json", "model.safetensors", "training.json"]
    assert torch.equal(outputs(model), outputs(models[name]))
    assert not model.training
    assert info.config == cfg and info.image_size == 32
    assert len(info.mean) == 3 and len(info.std) == 3


def test_extra_facts_are_kept(saved):
    root, _ = saved

    _, info = load_checkpoint(root / "smp")

    assert info.extra == {"metrics": {"val": {"mdice": 0.5}}}


def test_smp_from_pretrained_loads_the_folder(saved):
    root, models = saved

    model = smp.from_pretrained(str(root / "smp")).eval()

    assert type(model) is smp.Linknet
    assert torch.equal(outputs(model), outputs(models["smp"]))


def remove(name):
    return lambda folder, other: (folder / name).unlink()


def corrupt_weights(folder, other):
    (folder / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}")


def foreign_weights(folder, other):
    shutil.copy(other / "model.safetensors", folder / "model.safetensors")


def foreign_config(folder, other):
    shutil.copy(other / "config.json", folder / "config.json")


def shallower_config(folder, other):
    training = json.loads((folder / "training.json").read_text())
    training["train_config"]["encoder_depth"] = 4
    (folder / "training.json").write_text(json.dumps(training))


def bad_training_json(folder, other):
    (folder / "training.json").write_text(json.dumps({"train_config": {"arch": "unet", "colour": "red"}}))


@pytest.mark.filterwarnings("ignore::UserWarning")  # smp warns about mismatched shapes before we refuse
@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (remove("model.safetensors"), "missing model.safetensors"),
        (remove("training.json"), "missing training.json"),
        (remove("config.json"), "missing config.json"),
        (corrupt_weights, "model.safetensors: cannot read safetensors"),
        (foreign_weights, "model.safetensors: weights do not fit linknet/resnet18"),
        (foreign_config, "model class 'AttentionUNet' does not match"),
        (shallower_config, "weights do not fit linknet/resnet18 depth 4"),
        (bad_training_json, "training.json: unknown key.*colour"),
    ],
)
def test_broken_folders_are_refused_naming_the_problem(saved, tmp_path, damage, message):
    root, _ = saved
    folder = shutil.copytree(root / "smp", tmp_path / "broken")
    damage(folder, root / "attention")

    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(folder)


def test_missing_folder_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nowhere")


def test_loading_never_unpickles(saved, monkeypatch):
    root, models = saved

    def refuse(*args, **kwargs):
        raise AssertionError("a checkpoint load used pickle")

    for module, name in ((torch, "load"), (pickle, "load"), (pickle, "loads"), (pickle, "Unpickler")):
        monkeypatch.setattr(module, name, refuse)

    for name in ("smp", "attention"):
        model, _ = load_checkpoint(root / name)
        assert torch.equal(outputs(model), outputs(models[name]))


def test_saving_over_a_checkpoint_replaces_it(saved, tmp_path):
    root, models = saved
    folder = shutil.copytree(root / "smp", tmp_path / "best")
    newer = trained_looking_model(SMP_CONFIG, seed=1)

    save_checkpoint(newer, SMP_CONFIG, folder)

    model, info = load_checkpoint(folder)
    assert torch.equal(outputs(model), outputs(newer))
    assert info.extra == {}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best"]  # no staging or backup folders left


def test_a_failed_save_leaves_the_old_checkpoint_intact(saved, tmp_path, monkeypatch):
    root, models = saved
    folder = shutil.copytree(root / "smp", tmp_path / "best")

    def disk_full(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(polyp.checkpoint, "save_file", disk_full)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(trained_looking_model(SMP_CONFIG, seed=1), SMP_CONFIG, folder)

    model, _ = load_checkpoint(folder)
    assert torch.equal(outputs(model), outputs(models["smp"]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best"]
