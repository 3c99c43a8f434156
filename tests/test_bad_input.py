"""Bad input through the real command lines: refused with exit code 2 and a message naming the problem,
and nothing already stored is lost. Also: checkpoints are never unpickled, and writes are atomic.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import cv2
import numpy as np
import optuna
import pytest
import torch
from optuna.trial import TrialState
from search_fixtures import shipped_study_names

import polyp.checkpoint
import polyp.io
from polyp.checkpoint import load_checkpoint, save_checkpoint
from polyp.config import TrainConfig
from polyp.io import write_json
from polyp.models import build_model
from polyp.predict import main as predict_main
from polyp.train.__main__ import main as train_main
from polyp.train.history import write_history
from search.run import main as run_main

STUDY = "badinput"
STUDY_TOML = f"""
[study]
name = "{STUDY}"
[run]
sampler = "random"
pruner = "none"
latency = "torch"
sample_images = 1
val_fraction = 0.25
test_fraction = 0.25
[train]
arch = "linknet"
encoder = "resnet18"
encoder_depth = 3
encoder_weights = "none"
image_size = 32
epochs = 1
batch_size = 2
[space]
lr = {{ low = 1e-4, high = 1e-2, log = true }}
"""


@pytest.fixture(scope="module")
def existing(tmp_path_factory, synthetic_dir) -> dict:
    """A run folder whose SQLite study already holds 2 finished trials (fake trainer)."""
    root = tmp_path_factory.mktemp("existing")
    study_file = root / f"{STUDY}.toml"
    study_file.write_text(STUDY_TOML)
    run_dir = root / "runs"
    code = run_main(["--study", str(study_file), "--n-trials", "2", "--data", str(synthetic_dir), "--run-dir", str(run_dir),
                     "--trainer", "search.testing:fake_fit", "--quiet"])
    assert code == 0
    return {"root": root, "study_file": study_file, "run_dir": run_dir, "data": synthetic_dir}


def stored_trials(existing: dict) -> list[tuple[int, str, float]]:
    study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{existing['run_dir'] / 'optuna.db'}")
    return [(t.number, t.state.name, t.value) for t in study.get_trials()]


def tree(folder: Path) -> set[str]:
    """Every path under `folder`, relative to it."""
    return {str(path.relative_to(folder)) for path in folder.rglob("*")}


def run_search(existing: dict, capsys, *extra: str, study: str | None = None, data: str | None = None) -> tuple[int, str]:
    """`python -m search.run` on the existing run folder with `extra` options; returns (exit code, stderr)."""
    argv = ["--study", study or str(existing["study_file"]), "--n-trials", "3", "--data", data or str(existing["data"]),
            "--run-dir", str(existing["run_dir"]), "--trainer", "search.testing:fake_fit", "--quiet", *extra]
    capsys.readouterr()
    code = run_main(argv)
    return code, capsys.readouterr().err


# Data folders: each a copy of the synthetic set with one defect; (defect, words the message must hold).
def corrupt_image(folder: Path) -> tuple[Path, str]:
    path = folder / "images" / "synth_0000.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    return path, "cannot decode image"


def image_without_mask(folder: Path) -> tuple[Path, str]:
    (folder / "masks" / "synth_0001.png").unlink()
    return folder / "images" / "synth_0001.jpg", "no mask in"


def mask_of_another_size(folder: Path) -> tuple[Path, str]:
    path = folder / "masks" / "synth_0002.png"
    cv2.imwrite(str(path), np.zeros((20, 24), np.uint8))
    return path, "mask is 24x20 but image synth_0002.jpg is 32x32"


def non_image_file(folder: Path) -> tuple[Path, str]:
    path = folder / "images" / "notes.txt"
    path.write_text("not an image")
    return path, "not an image file"


def empty_folder(folder: Path) -> tuple[Path, str]:
    for sub in ("images", "masks"):
        shutil.rmtree(folder / sub)
        (folder / sub).mkdir()
    return folder, "images/ and masks/ are empty"


DATA_DEFECTS = [corrupt_image, image_without_mask, mask_of_another_size, non_image_file, empty_folder]


@pytest.mark.parametrize("defect", DATA_DEFECTS, ids=lambda f: f.__name__)
def test_bad_data_folder_is_refused_by_search_and_train(defect, existing, tmp_path, capsys):
    folder = Path(shutil.copytree(existing["data"], tmp_path / "data"))
    culprit, words = defect(folder)
    before = stored_trials(existing)

    code, err = run_search(existing, capsys, data=str(folder))
    assert code == 2, err
    assert str(culprit) in err and words in err and "Traceback" not in err

    code = train_main(["--data", str(folder), "--out", str(tmp_path / "one"), "--epochs", "1", "--image-size", "32"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert str(culprit) in err and words in err
    assert stored_trials(existing) == before


BAD_STUDY_FILES = {
    "unknown key in [run]": ("[run]\nsampler = 'random'\nbogus = 1\n", "[run].bogus: unknown key"),
    "unknown table": ("[runs]\nsampler = 'random'\n", "runs: unknown table"),
    "unknown TrainConfig field": ("[train]\nlearning_rate = 0.1\n", "[train]."),
    "searched field that does not exist": ("[space]\nwidth = [1, 2]\n", "[space].width: not a TrainConfig field"),
    "bad sampler": ("[run]\nsampler = 'annealing'\n", "[run].sampler: 'annealing' is not one of"),
    "not TOML": ("[run\nsampler = ", "cannot read study file"),
}


@pytest.mark.parametrize("case", BAD_STUDY_FILES, ids=list(BAD_STUDY_FILES))
def test_bad_study_file_is_refused(case, existing, tmp_path, capsys):
    text, words = BAD_STUDY_FILES[case]
    path = tmp_path / "bad.toml"
    path.write_text(text)
    before = stored_trials(existing)

    code, err = run_search(existing, capsys, study=str(path))
    assert code == 2, err
    assert str(path) in err and words in err
    assert stored_trials(existing) == before


def test_unknown_study_name_is_refused(existing, capsys):
    code, err = run_search(existing, capsys, study="no-such-study")
    assert code == 2
    assert "unknown study 'no-such-study'; known studies: " in err
    assert all(name in err for name in shipped_study_names())


def test_gp_sampler_under_a_pruner_is_refused(existing, capsys):
    before = stored_trials(existing)
    code, err = run_search(existing, capsys, "--sampler", "gp", "--pruner", "median")
    assert code == 2, err
    assert "--sampler/--pruner: sampler 'gp' with pruner 'median'" in err and "pruner 'none'" in err
    assert stored_trials(existing) == before


@pytest.mark.parametrize("url, words", [
    ("not a url", "storage URL 'not a url' is malformed"),
    ("postgresql://user@db-host:notaport/optuna", "is malformed"),
    ("mongodb://db-host/optuna", "storage URL 'mongodb://db-host/optuna' is malformed or names an unknown database"),
    ("postgresql://user:secret@127.0.0.1:1/optuna", "cannot reach the database at postgresql://user:***@127.0.0.1:1/optuna"),
    ("sqlite:////no/such/folder/optuna.db", "folder /no/such/folder does not exist"),
], ids=["malformed", "bad port", "unknown database", "unreachable", "missing sqlite folder"])
def test_bad_storage_is_refused(url, words, existing, capsys):
    before = stored_trials(existing)
    code, err = run_search(existing, capsys, "--storage", url)
    assert code == 2, err
    assert words in err
    assert "secret" not in err  # the password never shows
    assert stored_trials(existing) == before


def test_unwritable_run_folder_is_refused(existing, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way")
    argv = ["--study", str(existing["study_file"]), "--n-trials", "1", "--data", str(existing["data"]),
            "--run-dir", str(blocker / "runs"), "--trainer", "search.testing:fake_fit"]
    capsys.readouterr()
    assert run_main(argv) == 2
    assert f"run folder {blocker / 'runs'} is not writable" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["../escaped", "a/b", "..", "x/../../escaped", "/tmp/escaped"])
def test_study_name_never_escapes_the_run_folder(name, existing, tmp_path, capsys):
    """Refused as --study and as the name inside a study file; nothing is created anywhere."""
    study_file = tmp_path / "named.toml"
    study_file.write_text(STUDY_TOML.replace(f'name = "{STUDY}"', f"name = {json.dumps(name)}"))
    outside = tree(existing["root"]) | tree(tmp_path)

    code, err = run_search(existing, capsys, study=name)
    assert code == 2
    assert f"study name {name!r} is not allowed" in err
    code, err = run_search(existing, capsys, study=str(study_file))
    assert code == 2
    assert f"study name {name!r} is not allowed: use letters, digits" in err
    assert tree(existing["root"]) | tree(tmp_path) == outside
    assert not Path("/tmp/escaped").exists()


# Checkpoints: JSON and safetensors only.
@pytest.fixture
def checkpoint(tmp_path, tiny_config: TrainConfig) -> Path:
    torch.manual_seed(0)
    return save_checkpoint(build_model(tiny_config), tiny_config, tmp_path / "checkpoint", {"metrics": {}})


@pytest.fixture
def no_unpickling(monkeypatch):
    """Makes every unpickling entry point raise, so a test fails if anything unpickles."""
    def refuse(*args, **kwargs):
        raise AssertionError("something unpickled a file")

    for target, name in ((pickle, "load"), (pickle, "loads"), (torch, "load")):
        monkeypatch.setattr(target, name, refuse)


def test_checkpoint_is_loaded_without_unpickling(checkpoint, no_unpickling, synthetic_dir, tmp_path, capsys):
    model, info = load_checkpoint(checkpoint)
    assert info.config.arch == "linknet"
    image = sorted((synthetic_dir / "images").iterdir())[0]
    assert predict_main(["--model", str(checkpoint), "--input", str(image), "--out", str(tmp_path / "out")]) == 0


def _pickled_weights(folder: Path) -> None:
    torch.save({"state_dict": {}}, folder / "model.safetensors.tmp")  # a pickle wearing the safetensors name
    (folder / "model.safetensors.tmp").replace(folder / "model.safetensors")


def _other_arch(folder: Path) -> None:
    data = json.loads((folder / "training.json").read_text())
    data["train_config"]["arch"] = "unet"
    (folder / "training.json").write_text(json.dumps(data))


def _other_depth(folder: Path) -> None:
    data = json.loads((folder / "training.json").read_text())
    data["train_config"]["encoder_depth"] = 4
    (folder / "training.json").write_text(json.dumps(data))


BAD_CHECKPOINTS = {
    "missing weights": (lambda f: (f / "model.safetensors").unlink(), "missing model.safetensors"),
    "missing config": (lambda f: (f / "config.json").unlink(), "missing config.json"),
    "missing training.json": (lambda f: (f / "training.json").unlink(), "missing training.json"),
    "config not JSON": (lambda f: (f / "config.json").write_text("{half"), "config.json: not valid JSON"),
    "truncated weights": (lambda f: (f / "model.safetensors").write_bytes((f / "model.safetensors").read_bytes()[:100]),
                          "cannot read safetensors"),
    "pickled weights": (_pickled_weights, "cannot read safetensors"),
    "config of another architecture": (_other_arch, "model class 'Linknet' does not match training.json's arch 'unet'"),
    "weights of another depth": (_other_depth, "weights do not fit linknet/resnet18 depth 4"),
}


@pytest.mark.parametrize("case", BAD_CHECKPOINTS, ids=list(BAD_CHECKPOINTS))
def test_bad_checkpoint_folder_is_refused(case, checkpoint, no_unpickling, synthetic_dir, tmp_path, capsys):
    spoil, words = BAD_CHECKPOINTS[case]
    spoil(checkpoint)
    image = sorted((synthetic_dir / "images").iterdir())[0]
    code = predict_main(["--model", str(checkpoint), "--input", str(image), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert words in err


def test_missing_checkpoint_folder_is_refused(tmp_path, synthetic_dir, capsys):
    image = sorted((synthetic_dir / "images").iterdir())[0]
    assert predict_main(["--model", str(tmp_path / "nothing"), "--input", str(image), "--out", str(tmp_path / "o")]) == 2
    assert "checkpoint folder does not exist" in capsys.readouterr().err


# Atomic writes: a crash half-way leaves the previous file whole and no partial file under the final name.
class Crash(RuntimeError):
    pass


def crash_half_way(monkeypatch, module, name: str):
    """Replaces `module.name` (a writer taking a path) with one that writes half its output and crashes."""
    original = getattr(module, name)

    def half(*args, **kwargs):
        original(*args, **kwargs)
        path = Path(next(a for a in args if isinstance(a, str | Path) and Path(a).exists()))
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        raise Crash("simulated crash while writing")

    monkeypatch.setattr(module, name, half)


def test_json_write_crash_keeps_the_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "result.json"
    write_json(target, {"version": 1})
    monkeypatch.setattr(polyp.io.os, "replace", lambda *a: (_ for _ in ()).throw(Crash("crash before rename")))
    with pytest.raises(Crash):
        write_json(target, {"version": 2, "padding": "x" * 10_000})
    assert json.loads(target.read_text()) == {"version": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


def test_history_write_crash_keeps_the_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "history.csv"
    write_history(target, [{"epoch": 1, "val_mdice": 0.5}])
    previous = target.read_text()
    monkeypatch.setattr(polyp.io.os, "replace", lambda *a: (_ for _ in ()).throw(Crash("crash before rename")))
    with pytest.raises(Crash):
        write_history(target, [{"epoch": e, "val_mdice": 0.1 * e} for e in range(1, 100)])
    assert target.read_text() == previous
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.csv"]


def test_checkpoint_write_crash_keeps_the_previous_checkpoint(checkpoint, tiny_config, monkeypatch):
    before = {p.name: p.read_bytes() for p in checkpoint.iterdir()}
    crash_half_way(monkeypatch, polyp.checkpoint, "save_file")  # the weights file is cut short, then a crash
    torch.manual_seed(1)
    with pytest.raises(Crash):
        save_checkpoint(build_model(tiny_config), tiny_config, checkpoint, {"metrics": {"new": True}})
    assert {p.name: p.read_bytes() for p in checkpoint.iterdir()} == before
    assert sorted(p.name for p in checkpoint.parent.iterdir()) == ["checkpoint"]  # no staging folder left
    load_checkpoint(checkpoint)


def test_checkpoint_rename_crash_keeps_the_previous_checkpoint(checkpoint, tiny_config, monkeypatch):
    """A failure while swapping the new folder in puts the previous one back."""
    before = {p.name: p.read_bytes() for p in checkpoint.iterdir()}
    real_replace, failed = polyp.checkpoint.os.replace, []

    def swap_in_fails(source, destination):
        if Path(destination) == checkpoint and not failed:  # the first move onto the final name: the new folder
            failed.append(source)
            raise Crash("simulated failure renaming the new checkpoint into place")
        real_replace(source, destination)

    monkeypatch.setattr(polyp.checkpoint.os, "replace", swap_in_fails)
    with pytest.raises(Crash):
        save_checkpoint(build_model(tiny_config), tiny_config, checkpoint, {"metrics": {"new": True}})
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in checkpoint.iterdir()} == before
    assert sorted(p.name for p in checkpoint.parent.iterdir()) == ["checkpoint"]


def test_existing_study_is_intact_after_all_refusals(existing):
    trials = stored_trials(existing)
    assert [(number, state) for number, state, _ in trials] == [(0, TrialState.COMPLETE.name), (1, TrialState.COMPLETE.name)]
    assert (existing["run_dir"] / STUDY / "trial-0" / "checkpoint" / "model.safetensors").is_file()
