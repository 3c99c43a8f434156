"""TrainConfig: coercion from any mapping, refusals that name the key, immutability, JSON files."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from polyp.architectures import ARCHITECTURES
from polyp.config import ARCHS, ConfigError, TrainConfig, check_image_size, load_config, parse_config


def test_parse_config_coerces_strings_of_a_csv_row():
    text = "arch,lr,encoder_depth,epochs,channels_last,compile,image_size,encoder,warmup_epochs\n" \
           "linknet,1e-3,4,3.0,false,yes, 64 ,,2\n"
    row = next(csv.DictReader(io.StringIO(text)))

    cfg = parse_config(row)

    assert cfg.arch == "linknet"
    assert cfg.lr == 0.001 and type(cfg.lr) is float
    assert cfg.encoder_depth == 4 and type(cfg.encoder_depth) is int
    assert cfg.epochs == 3 and type(cfg.epochs) is int
    assert cfg.channels_last is False
    assert cfg.compile is True
    assert cfg.image_size == 64
    assert cfg.encoder == TrainConfig().encoder  # empty cell keeps the default
    assert cfg.warmup_epochs == 2.0 and type(cfg.warmup_epochs) is float


def test_parse_config_keeps_base_values_for_missing_and_none():
    base = TrainConfig(arch="unet", encoder="resnet18", image_size=64, epochs=3)

    cfg = parse_config({"lr": 0.01, "epochs": None}, base=base)

    assert (cfg.arch, cfg.encoder, cfg.image_size, cfg.epochs) == ("unet", "resnet18", 64, 3)
    assert cfg.lr == 0.01


def test_to_dict_round_trips_through_parse_config():
    cfg = TrainConfig(arch="fpn", encoder="resnet34", encoder_depth=4, loss="bce+0.5*dice", lr=2e-4)

    assert parse_config(cfg.to_dict()) == cfg
    assert parse_config({k: str(v) for k, v in cfg.to_dict().items()}) == cfg


def test_unknown_key_is_refused_by_name():
    with pytest.raises(ConfigError, match="learning_rate") as raised:
        parse_config({"learning_rate": "0.1", "arch": "unet"})
    assert "valid keys" in str(raised.value) and "lr" in str(raised.value)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("epochs", "many"),  # not a number
        ("epochs", "2.5"),  # not a whole number
        ("epochs", True),  # a bool is no int
        ("channels_last", "maybe"),
        ("lr", "0"),  # below the range
        ("lr", "nan"),
        ("batch_size", 0),
        ("encoder_depth", 6),
        ("momentum", 1.5),
        ("arch", "segformer"),  # not a choice
        ("optimizer", "lion"),
        ("augment", "extreme"),
        ("image_size", 100),  # not a multiple of 2**5
        ("loss", "bce+foo"),
        ("loss", "bce+bce"),
    ],
)
def test_bad_value_is_refused_naming_the_key(key, value):
    with pytest.raises(ConfigError) as raised:
        parse_config({key: value})
    assert str(raised.value).startswith(f"{key}:"), str(raised.value)


def test_image_size_must_fit_the_encoder_depth():
    assert parse_config({"image_size": 96, "encoder_depth": 5}).image_size == 96
    assert parse_config({"image_size": 40, "encoder_depth": 3}).image_size == 40
    with pytest.raises(ConfigError, match=r"image_size: 40 is not a multiple of 2\*\*encoder_depth = 16"):
        parse_config({"image_size": 40, "encoder_depth": 4})


@pytest.mark.parametrize(("image_size", "depth", "problem"), [
    (96, 5, None),
    (40, 3, None),
    (40, 4, "40 is not a multiple of 2**encoder_depth = 16; use e.g. 32"),
    (50, 4, "50 is not a multiple of 2**encoder_depth = 16; use e.g. 48"),
    (20, 5, "20 is not a multiple of 2**encoder_depth = 32; use e.g. 32"),
])
def test_check_image_size_names_the_stride_and_a_size_that_fits(image_size, depth, problem):
    assert check_image_size(image_size, depth) == problem


def test_the_config_offers_exactly_the_registered_architectures():
    assert ARCHS == tuple(ARCHITECTURES)


def test_the_config_imports_without_torch():
    code = "import sys, polyp.config; print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))"
    root = Path(__file__).resolve().parents[1]

    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60)

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_constructor_refuses_wrong_types_too():
    with pytest.raises(ConfigError, match="^lr:"):
        TrainConfig(lr="1e-3")
    assert TrainConfig(lr=1).lr == 1.0 and type(TrainConfig(lr=1).lr) is float


def test_config_is_frozen():
    cfg = TrainConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lr = 0.1  # type: ignore[misc]


def test_replace_makes_validated_variants():
    cfg = TrainConfig(arch="unet", encoder="resnet18")

    variant = dataclasses.replace(cfg, lr=0.01, epochs=2)

    assert (variant.lr, variant.epochs, variant.arch) == (0.01, 2, "unet")
    assert cfg.lr == TrainConfig().lr  # the original is unchanged
    with pytest.raises(ConfigError, match="^epochs:"):
        dataclasses.replace(cfg, epochs=0)


@pytest.mark.parametrize("nested", [False, True])
def test_load_config_reads_json(tmp_path, nested):
    values = {"arch": "manet", "encoder": "resnet18", "encoder_depth": 4, "lr": 0.0005, "loss": "dice+focal"}
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"train_config": values, "metrics": {}} if nested else values))

    cfg = load_config(path)

    assert cfg == TrainConfig(**values)


def test_load_config_names_the_file_and_the_key(tmp_path):
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps({"arch": "unet", "dropout": 0.1}))
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")

    with pytest.raises(ConfigError, match=r"unknown\.json.*dropout"):
        load_config(unknown)
    with pytest.raises(ConfigError, match=r"broken\.json"):
        load_config(broken)
    with pytest.raises(ConfigError, match=r"list\.json: expected a JSON object"):
        load_config(listed)
    with pytest.raises(ConfigError, match=r"missing\.json"):
        load_config(tmp_path / "missing.json")
