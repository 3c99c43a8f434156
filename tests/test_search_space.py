"""The search space: `suggest` with FixedTrial, conditional parameters, sampled configs, samplers and pruners.

The tests build their spaces on the tiny study (search_fixtures.tiny_spec), except the one that samples every
shipped study.
"""

from __future__ import annotations

import dataclasses
import math

import optuna
import pytest
from optuna.trial import FixedTrial
from search_fixtures import shipped_study_names, tiny_spec

from polyp.losses import parse_loss_spec
from polyp.models import check_buildable
from search.study.definition import load_study
from search.study.samplers import build_pruner, build_sampler, grid_space
from search.study.space import suggest

SMALL_SPACE = {  # on the tiny study's [train]: 32 px, 3 epochs, batch size 4
    "arch": ["unetplusplus", "linknet"], "encoder": ["resnet18", "mobilenet_v2"], "encoder_depth": [3, 4],
    "lr": {"low": 5e-4, "high": 1e-2, "log": True}, "loss": ["bce+dice", "dice+focal", "bce+0.5*tversky"],
}
SMALL_PARAMS = {"arch": "linknet", "encoder": "resnet18", "encoder_depth": 3, "lr": 2e-3, "loss": "dice+focal"}


def test_fixed_trial_gives_the_expected_config():
    spec = tiny_spec(**SMALL_SPACE)
    cfg = suggest(FixedTrial(SMALL_PARAMS), spec)
    assert cfg == dataclasses.replace(spec.base, **SMALL_PARAMS)
    assert cfg.image_size == 32 and cfg.epochs == 3 and cfg.batch_size == 4  # from [train]


def test_fixed_trial_suggests_exactly_the_space():
    trial = FixedTrial(SMALL_PARAMS)
    suggest(trial, tiny_spec(**SMALL_SPACE))
    assert trial.params == SMALL_PARAMS


def test_fixed_trial_missing_a_parameter_is_an_error():
    params = {k: v for k, v in SMALL_PARAMS.items() if k != "lr"}
    with pytest.raises(ValueError, match="lr"):
        suggest(FixedTrial(params), tiny_spec(**SMALL_SPACE))


UNETPP = {"arch": "unetplusplus", "encoder": "resnet34", "encoder_depth": 4, "decoder_attention": "scse", "lr": 1e-3,
          "batch_size": 4, "optimizer": "adamw", "weight_decay": 1e-4, "augment": "heavy", "schedule": "cosine", "deep_supervision": False}

UNETPP_SPACE = {  # a UNet++ space with tversky among its losses, as studies/unetpp.toml has
    "arch": ["unetplusplus"], "encoder": ["resnet18", "resnet34"], "encoder_depth": [3, 4],
    "decoder_attention": ["none", "scse"], "batch_size": [4, 8], "optimizer": ["adamw", "sgd"],
    "weight_decay": {"low": 1e-6, "high": 1e-2, "log": True}, "augment": ["light", "heavy"],
    "schedule": ["onecycle", "cosine"], "loss": ["bce+dice", "dice+focal+tversky", "tversky"],
    "tversky_alpha": {"low": 0.2, "high": 0.5},
}
ARCHITECTURES_SPACE = {  # every architecture, with encoders and decoder attention, as studies/architectures.toml has
    "arch": ["unetplusplus", "linknet", "unet", "fpn", "deeplabv3plus", "manet", "attention_unet"],
    "encoder": ["resnet18", "mobilenet_v2"], "encoder_depth": [3, 4], "decoder_attention": ["none", "scse"],
    "batch_size": [4, 8], "loss": ["bce+dice", "bce+lovasz"], "augment": ["light", "medium"],
}


def test_tversky_alpha_only_with_a_tversky_loss():
    spec = tiny_spec(**UNETPP_SPACE)
    with_tversky = FixedTrial({**UNETPP, "loss": "dice+focal+tversky", "tversky_alpha": 0.25})
    assert suggest(with_tversky, spec).tversky_alpha == 0.25
    assert "tversky_alpha" in with_tversky.params
    without = FixedTrial({**UNETPP, "loss": "bce+dice", "tversky_alpha": 0.25})
    assert suggest(without, spec).tversky_alpha == spec.base.tversky_alpha
    assert "tversky_alpha" not in without.params


def test_decoder_attention_only_for_unet_and_unetplusplus():
    spec = tiny_spec(**ARCHITECTURES_SPACE)
    common = {"encoder": "resnet18", "encoder_depth": 4, "lr": 1e-3, "batch_size": 4, "loss": "bce+dice",
              "augment": "light", "decoder_attention": "scse"}
    for arch in ("unet", "unetplusplus"):
        trial = FixedTrial({**common, "arch": arch})
        assert suggest(trial, spec).decoder_attention == "scse"
        assert "decoder_attention" in trial.params
    for arch in ("linknet", "fpn", "deeplabv3plus", "manet"):
        trial = FixedTrial({**common, "arch": arch})
        assert suggest(trial, spec).decoder_attention == "none"
        assert "decoder_attention" not in trial.params


def test_attention_unet_gets_no_encoder():
    spec = tiny_spec(**ARCHITECTURES_SPACE)
    trial = FixedTrial({"arch": "attention_unet", "encoder_depth": 4, "lr": 1e-3, "batch_size": 8, "loss": "bce+lovasz",
                        "augment": "medium"})
    cfg = suggest(trial, spec)
    assert cfg.arch == "attention_unet" and cfg.decoder_attention == "none" and cfg.encoder_weights == "none"
    assert "encoder" not in trial.params and "decoder_attention" not in trial.params
    check_buildable(cfg)


def test_momentum_only_for_sgd():
    spec = tiny_spec(optimizer=["adamw", "sgd"], momentum={"low": 0.8, "high": 0.99})
    sgd = FixedTrial({"optimizer": "sgd", "lr": 1e-3, "momentum": 0.85})
    assert suggest(sgd, spec).momentum == 0.85
    adamw = FixedTrial({"optimizer": "adamw", "lr": 1e-3})
    assert suggest(adamw, spec).momentum == spec.base.momentum and "momentum" not in adamw.params


def test_integer_range_suggests_integers():
    spec = tiny_spec(batch_size={"low": 2, "high": 16, "step": 2})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    sizes = {suggest(study.ask(), spec).batch_size for _ in range(30)}
    assert all(isinstance(size, int) and size % 2 == 0 and 2 <= size <= 16 for size in sizes)


def _loss_names(loss: str) -> set[str]:
    return {name for _, name in parse_loss_spec(loss)}


@pytest.mark.parametrize("study_name", shipped_study_names())
def test_random_sampling_of_every_shipped_study_gives_only_valid_buildable_configs(study_name: str):
    spec = load_study(study_name)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    archs = set()
    for _ in range(200):
        trial = study.ask()
        cfg = suggest(trial, spec)
        check_buildable(cfg)
        assert cfg.image_size % 2**cfg.encoder_depth == 0
        assert cfg.image_size == spec.base.image_size and cfg.epochs == spec.base.epochs
        params = trial.params
        for name, value in params.items():
            assert getattr(cfg, name) == value
        if "decoder_attention" in spec.space:
            assert ("decoder_attention" in params) == (cfg.arch in ("unet", "unetplusplus"))
        if cfg.arch not in ("unet", "unetplusplus"):
            assert cfg.decoder_attention == "none"
        if "encoder" in spec.space:
            assert ("encoder" in params) == (cfg.arch != "attention_unet")
        if "tversky_alpha" in spec.space:
            assert ("tversky_alpha" in params) == ("tversky" in _loss_names(cfg.loss))
        archs.add(cfg.arch)
        study.tell(trial, 0.0)
    assert archs == set(spec.space["arch"]), "200 random trials reach every architecture"


def test_grid_space_of_choices_and_a_log_range():
    spec = tiny_spec(**SMALL_SPACE)
    grid = grid_space(spec)
    assert grid["arch"] == ["unetplusplus", "linknet"]
    assert grid["encoder_depth"] == [3, 4]
    low, mid, high = grid["lr"]
    assert (low, high) == (5e-4, 1e-2) and math.isclose(mid, math.sqrt(5e-4 * 1e-2))
    assert set(grid) == set(spec.space)


def test_grid_space_of_integer_and_linear_ranges():
    spec = tiny_spec(batch_size={"low": 4, "high": 16}, momentum={"low": 0.8, "high": 0.9})
    grid = grid_space(spec)
    assert grid["batch_size"] == [4, 10, 16] and all(isinstance(v, int) for v in grid["batch_size"])
    assert grid["momentum"] == pytest.approx([0.8, 0.85, 0.9])


def test_grid_sampler_visits_every_grid_point_once():
    spec = tiny_spec(encoder_depth=[3, 4])
    study = optuna.create_study(sampler=build_sampler("grid", spec, seed=0))
    seen = []

    def objective(trial: optuna.trial.Trial) -> float:
        cfg = suggest(trial, spec)
        seen.append((cfg.encoder_depth, cfg.lr))
        return 0.0

    study.optimize(objective, n_trials=20)  # the grid sampler stops the study once the grid is done
    assert len(seen) == 6 == len(set(seen))  # 2 depths x 3 learning rates
    assert {depth for depth, _ in seen} == {3, 4}


@pytest.mark.parametrize("name, kind", [("tpe", optuna.samplers.TPESampler), ("random", optuna.samplers.RandomSampler),
                                        ("gp", optuna.samplers.GPSampler), ("grid", optuna.samplers.GridSampler)])
def test_build_sampler(name: str, kind: type):
    assert isinstance(build_sampler(name, tiny_spec(**SMALL_SPACE), seed=0), kind)


@pytest.mark.parametrize("name, kind", [("median", optuna.pruners.MedianPruner),
                                        ("hyperband", optuna.pruners.HyperbandPruner),
                                        ("sha", optuna.pruners.SuccessiveHalvingPruner),
                                        ("none", optuna.pruners.NopPruner)])
def test_build_pruner(name: str, kind: type):
    assert isinstance(build_pruner(name, tiny_spec()), kind)


def test_unknown_sampler_and_pruner_list_the_valid_names():
    spec = tiny_spec()
    with pytest.raises(ValueError, match="tpe, random, gp, grid"):
        build_sampler("annealing", spec, seed=0)
    with pytest.raises(ValueError, match="median, hyperband, sha, none"):
        build_pruner("never", spec)


def test_gp_sampler_is_refused_under_a_pruner():
    spec = tiny_spec()  # its pruner: median
    gp = dataclasses.replace(spec, run=dataclasses.replace(spec.run, sampler="gp"))
    with pytest.raises(ValueError, match="--sampler/--pruner: sampler 'gp' with pruner 'median'.*complete trials only"):
        build_pruner("median", gp)
    assert isinstance(build_pruner("none", gp), optuna.pruners.NopPruner)


@pytest.mark.parametrize("pruner_startup, pruned", [(3, True), (4, False)])
def test_median_pruner_waits_for_pruner_startup_trials(pruner_startup: int, pruned: bool):
    spec = tiny_spec()
    spec = dataclasses.replace(spec, run=dataclasses.replace(spec.run, warmup_epochs=1, startup_trials=10,
                                                             pruner_startup_trials=pruner_startup))
    study = optuna.create_study(direction="maximize", pruner=build_pruner("median", spec))
    for _ in range(3):  # three complete trials at 0.5 after epoch 1
        trial = study.ask()
        trial.report(0.5, step=1)
        study.tell(trial, 0.5)
    weak = study.ask()
    weak.report(0.1, step=1)
    assert bool(weak.should_prune()) is pruned
