"""Study files: every shipped one loads (and the shipped spreadsheet fits the grid study), names and paths
both work, and each bad key is refused by name.

Only the tests named `*shipped*` read studies/ and hyperparameters.csv; the rest write their own study files.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from search_fixtures import ROOT, TINY_STUDY, shipped_study_names, write_study

from search import replay
from search.engine.replay_rows import outside_space
from search.study.definition import STUDIES_DIR, Range, StudyError, StudySpec, load_study, validate_study_name
from search.study.spreadsheet import read_spreadsheet

SHIPPED = sorted(STUDIES_DIR.glob("*.toml"))


def test_shipped_studies_include_the_four_the_readme_lists():
    assert {"demo", "unetpp", "linknet", "architectures"} <= {path.stem for path in SHIPPED}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda path: path.stem)
def test_every_shipped_study_loads(path: Path):
    spec = load_study(path.stem)
    assert isinstance(spec, StudySpec)
    assert spec.name == path.stem
    assert spec.space, "a study searches something"
    assert spec.description


def test_shipped_study_by_name_and_by_path_is_the_same_study(tmp_path: Path):
    by_name = load_study("demo")  # a name is looked up in studies/
    by_path = load_study(str(STUDIES_DIR / "demo.toml"))
    copied = tmp_path / "copy-of-demo.toml"
    copied.write_text((STUDIES_DIR / "demo.toml").read_text())
    by_copy = load_study(str(copied))
    assert by_name == by_path
    assert (by_copy.name, by_copy.base, by_copy.space, by_copy.run) == (by_name.name, by_name.base, by_name.space,
                                                                         by_name.run)


def test_study_name_defaults_to_the_file_name(tmp_path: Path):
    tables = copy.deepcopy(TINY_STUDY)
    del tables["study"]["name"]
    spec = load_study(str(write_study(tmp_path, tables, "my-study.toml")))
    assert spec.name == "my-study"


def test_study_file_settings_reach_the_spec(tmp_path: Path):
    tables = copy.deepcopy(TINY_STUDY)
    tables["run"].update(sampler="tpe", pruner="median")
    tables["train"]["image_size"] = 64
    tables["space"].update(arch=["unetplusplus", "linknet"], lr={"low": 5e-4, "high": 1e-2, "log": True})
    spec = load_study(str(write_study(tmp_path, tables)))
    assert spec.run.sampler == "tpe" and spec.run.pruner == "median"
    assert spec.base.image_size == 64
    assert spec.space["arch"] == ["unetplusplus", "linknet"]
    assert spec.space["lr"] == Range(5e-4, 1e-2, log=True)


def test_unknown_study_lists_the_shipped_ones():
    with pytest.raises(StudyError) as error:
        load_study("no-such-study")
    message = str(error.value)
    assert "no-such-study" in message
    for known in shipped_study_names():
        assert known in message


def test_missing_study_file_is_named(tmp_path: Path):
    with pytest.raises(StudyError, match="does not exist"):
        load_study(str(tmp_path / "absent.toml"))


def test_unreadable_toml_is_refused(tmp_path: Path):
    path = tmp_path / "broken.toml"
    path.write_text("[space\narch = ")
    with pytest.raises(StudyError, match="cannot read study file"):
        load_study(str(path))


@pytest.mark.parametrize("name", ["a/b", "../demo", "..", "x/../y", "a..b", "", ".hidden", "/etc/passwd"])
def test_unsafe_study_names_are_refused(name: str):
    with pytest.raises(StudyError, match="not allowed"):
        validate_study_name(name)


@pytest.mark.parametrize("name", ["../demo", "a/b", ".."])
def test_unsafe_names_are_refused_by_load_study(name: str):
    with pytest.raises(StudyError, match="not allowed"):
        load_study(name)


@pytest.mark.parametrize("name", ["../escape", "a/b", "x..y"])
def test_unsafe_name_inside_a_study_file_is_refused(tmp_path: Path, name: str):
    tables = copy.deepcopy(TINY_STUDY)
    tables["study"]["name"] = name
    with pytest.raises(StudyError, match="not allowed"):
        load_study(str(write_study(tmp_path, tables)))


def _study(**changes: dict) -> dict:
    """TINY_STUDY with the entries of `changes` ({table: {key: value}}) added or replaced."""
    tables = copy.deepcopy(TINY_STUDY)
    for table, entries in changes.items():
        tables.setdefault(table, {}).update(entries)
    return tables


BAD_STUDIES = {  # id: (tables, words the message must contain)
    "run-unknown-key": (_study(run={"samplr": "tpe"}), ["[run].samplr", "unknown key"]),
    "run-bad-sampler": (_study(run={"sampler": "annealing"}), ["[run].sampler", "annealing"]),
    "run-bad-pruner": (_study(run={"pruner": "never"}), ["[run].pruner", "never"]),
    "run-gp-under-pruner": (_study(run={"sampler": "gp", "pruner": "median"}),
                            ["[run].sampler/pruner", "'gp'", "complete trials only"]),
    "run-negative-startup": (_study(run={"pruner_startup_trials": -1}), ["[run].pruner_startup_trials", "negative"]),
    "run-wrong-type": (_study(run={"startup_trials": "x"}), ["[run].startup_trials", "int"]),
    "run-bool-for-int": (_study(run={"seed": True}), ["[run].seed"]),
    "study-unknown-key": (_study(study={"nme": "x"}), ["[study].nme"]),
    "unknown-table": (_study(sapce={"lr": [1e-3]}), ["sapce", "unknown table"]),
    "train-wrong-type": (_study(train={"epochs": "x"}), ["[train].epochs", "'x'"]),
    "train-unknown-key": (_study(train={"epoch": 3}), ["[train]", "epoch"]),
    "train-out-of-range": (_study(train={"lr": -1.0}), ["[train].lr"]),
    "space-unknown-key": (_study(space={"lrr": [1e-3]}), ["[space].lrr", "not a TrainConfig field"]),
    "space-bad-choice": (_study(space={"arch": ["nope"]}), ["[space].arch", "'nope'"]),
    "space-bad-loss": (_study(space={"loss": ["bce+dice", "bce+nonsense"]}), ["[space].loss", "bce+nonsense"]),
    "space-empty-choices": (_study(space={"optimizer": []}), ["[space].optimizer", "empty"]),
    "space-low-above-high": (_study(space={"lr": {"low": 1e-2, "high": 1e-4, "log": True}}), ["[space].lr", "low < high"]),
    "space-log-from-zero": (_study(space={"weight_decay": {"low": 0.0, "high": 1e-2, "log": True}}),
                            ["[space].weight_decay"]),
    "space-bound-invalid": (_study(space={"batch_size": {"low": 0, "high": 8}}), ["[space].batch_size", "bound"]),
    "space-range-on-text": (_study(space={"optimizer": {"low": 1, "high": 2}}), ["[space].optimizer", "numeric"]),
    "space-range-needs-high": (_study(space={"lr": {"low": 1e-4}}), ["[space].lr", "low and high"]),
    "space-log-with-step": (_study(space={"lr": {"low": 1e-4, "high": 1e-2, "log": True, "step": 1e-3}}),
                            ["[space].lr", "step"]),
    "space-not-list-or-table": (_study(space={"lr": "fast"}), ["[space].lr", "'fast'"]),
    "space-image-size": (_study(space={"image_size": [32, 64]}), ["[space].image_size", "cannot be searched"]),
    "space-depth-range": (_study(space={"encoder_depth": {"low": 3, "high": 5}}), ["[space]", "encoder_depth"]),
    "mit_b0-at-depth-3": (_study(space={"arch": ["unet"], "encoder": ["resnet18", "mit_b0"], "encoder_depth": [3, 5]}),
                          ["[space]", "mit_b0", "depth 3"]),
    "mit_b0-with-linknet": (_study(space={"encoder": ["mit_b0"], "encoder_depth": [5]}), ["[space]", "linknet", "mit_b0"]),
    "size-not-divisible-by-searched-depth": (_study(train={"image_size": 40}, space={"encoder_depth": [3, 4]}),
                                             ["encoder_depth", "image_size: 40"]),
    "size-not-divisible-by-train-depth": (_study(train={"image_size": 36}), ["[train].image_size", "36"]),
}


@pytest.mark.parametrize("case", BAD_STUDIES, ids=list(BAD_STUDIES))
def test_bad_study_file_is_refused_naming_the_key(tmp_path: Path, case: str):
    tables, words = BAD_STUDIES[case]
    path = write_study(tmp_path, tables)
    with pytest.raises(StudyError) as error:
        load_study(str(path))
    message = str(error.value)
    assert str(path) in message, "the message names the file"
    for word in words:
        assert word in message


def test_tiny_study_is_valid(tmp_path: Path):
    spec = load_study(str(write_study(tmp_path, TINY_STUDY)))
    assert spec.name == "tiny"
    assert spec.space == {"lr": Range(1e-5, 1.0, log=True)}
    assert spec.base.encoder_depth == 3 and spec.base.image_size == 32


def test_shipped_csv_fits_the_grid_study():
    spec = load_study("grid")
    grid = read_spreadsheet(ROOT / "hyperparameters.csv", spec.base)
    configs = [row.config for row in grid.rows]
    assert 18 <= len(configs) <= 24
    assert {c.arch for c in configs} == {"unetplusplus", "linknet"}
    assert {c.encoder_depth for c in configs} == {3, 4, 5}
    assert len({c.encoder for c in configs}) >= 4 and len({c.lr for c in configs}) >= 3
    assert len({c.loss for c in configs}) >= 4
    assert outside_space(grid, spec) == []  # every value is an Optuna param of the study
    assert replay.main(["--csv", str(ROOT / "hyperparameters.csv"), "--study", "grid", "--image-size", "64",
                        "--check"]) == 0
