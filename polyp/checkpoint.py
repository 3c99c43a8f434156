"""Checkpoint folders: `config.json` + `model.safetensors` (+ `training.json`), never pickled.

For smp architectures the folder is what `segmentation_models_pytorch.from_pretrained(folder)` loads;
our Attention U-Net loads through `load_checkpoint`.

Example:
    >>> from polyp.checkpoint import load_checkpoint
    >>> model, info = load_checkpoint("runs/export/best")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from polyp.config import ConfigError, TrainConfig, parse_config
from polyp.data.augment import IMAGENET_MEAN, IMAGENET_STD
from polyp.errors import PolypError
from polyp.io import write_json
from polyp.models import build_model, input_normalization
from polyp.models.attention_unet import AttentionUNet
from polyp.models.ensemble import ENSEMBLE_KEY, MEMBER_PREFIX, Ensemble

CONFIG_FILE, WEIGHTS_FILE, TRAINING_FILE = "config.json", "model.safetensors", "training.json"
TRAINING_ONLY = ("deep_heads.",)  # weights that serve training only (deep supervision's extra heads): not saved


class CheckpointError(PolypError):
    """A checkpoint folder that is missing a file or whose files do not match."""


@dataclass
class CheckpointInfo:
    """What `training.json` says about a checkpoint."""

    config: TrainConfig
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    extra: dict[str, Any]  # metrics, study, trial and anything else stored beside the config


def preprocessing(cfg: TrainConfig) -> dict[str, Any]:
    """The input preprocessing a checkpoint of `cfg` expects."""
    mean, std = input_normalization(cfg)
    return {"image_size": cfg.image_size, "mean": list(mean), "std": list(std),
            "resize": "square, INTER_AREA", "input": "RGB uint8 / 255, then (x - mean) / std"}


def save_checkpoint(model: nn.Module, cfg: TrainConfig, folder: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Writes `model` and its config into `folder`, atomically (a temporary folder renamed at the end).

    Args:
        model: the trained model (any device; weights are saved from CPU copies).
        cfg: its training config.
        folder: target folder; an existing one is replaced only once the new one is complete.
        extra: more facts for training.json (metrics, study, trial).

    Returns:
        The folder.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        model = getattr(model, "_orig_mod", model)  # unwrap torch.compile
        state = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()
                 if not key.startswith(TRAINING_ONLY)}
        if isinstance(model, AttentionUNet):
            config = {"_model_class": "AttentionUNet", **model.config}
        else:
            config = {"_model_class": saved_class_name(model), **model.config, "encoder_weights": None}
        (staging / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        save_file(state, str(staging / WEIGHTS_FILE), metadata={"format": "pt"})
        usage = {"deep_supervision": deep_supervision_usage(model)} if hasattr(model, "deep_heads") else {}
        write_json(staging / TRAINING_FILE, {"train_config": cfg.to_dict(), "preprocessing": preprocessing(cfg),
                                              **usage, **(extra or {})})
        replace_folder(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def replace_folder(staging: Path, folder: Path) -> None:
    """Puts the complete `staging` folder in place of `folder`; a previous `folder` is removed only afterwards."""
    if folder.exists():
        backup = folder.with_name(f".{folder.name}.old-{os.getpid()}")
        os.replace(folder, backup)
        try:
            os.replace(staging, folder)
        except BaseException:
            os.replace(backup, folder)  # the previous checkpoint goes back under its name
            raise
        shutil.rmtree(backup, ignore_errors=True)
    else:
        os.replace(staging, folder)


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(f"{path.parent}: missing {path.name}; a checkpoint needs {CONFIG_FILE}, {WEIGHTS_FILE} and {TRAINING_FILE}")
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return data


def read_info(folder: str | Path) -> CheckpointInfo:
    """Reads `training.json` of a checkpoint folder."""
    data = _read_json(Path(folder) / TRAINING_FILE)
    try:
        cfg = parse_config(data.get("train_config", {}))
    except ConfigError as error:
        raise CheckpointError(f"{Path(folder) / TRAINING_FILE}: {error}") from None
    pre = data.get("preprocessing", preprocessing(cfg))
    extra = {k: v for k, v in data.items() if k not in ("train_config", "preprocessing")}
    return CheckpointInfo(cfg, int(pre.get("image_size", cfg.image_size)), tuple(pre.get("mean", IMAGENET_MEAN)),
                          tuple(pre.get("std", IMAGENET_STD)), extra)


def load_checkpoint(folder: str | Path) -> tuple[nn.Module, CheckpointInfo]:
    """Loads a checkpoint folder into an eval-mode CPU model, reading only JSON and safetensors; an ensemble
    folder (`save_ensemble`) into one `polyp.models.ensemble.Ensemble` that averages its members' probabilities.

    Raises:
        CheckpointError: a file is missing, unreadable, or the weights do not fit the config.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: checkpoint folder does not exist")
    training = _read_json(folder / TRAINING_FILE)
    if ENSEMBLE_KEY in training:
        return load_ensemble(folder, training)  # its members load through this function
    config = _read_json(folder / CONFIG_FILE)
    info = read_info(folder)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{folder}: missing {WEIGHTS_FILE}")
    class_name = config.get("_model_class")
    model = build_model_for(info.config)
    expected = saved_class_name(model)
    if class_name != expected:
        raise CheckpointError(f"{folder / CONFIG_FILE}: model class {class_name!r} does not match "
                              f"{TRAINING_FILE}'s arch {info.config.arch!r} ({expected})")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"{weights}: cannot read safetensors ({error})") from None
    own = model.state_dict()  # compared here: smp's load_state_dict would print every mismatched key first
    missing = [key for key in own if key not in state]
    unexpected = [key for key in state if key not in own]
    reshaped = [f"{key} {tuple(state[key].shape)} vs {tuple(own[key].shape)}"
                for key in own if key in state and state[key].shape != own[key].shape]
    if missing or unexpected or reshaped:
        raise CheckpointError(
            f"{weights}: weights do not fit {info.config.arch}/{info.config.encoder} depth {info.config.encoder_depth}: "
            f"{len(missing)} missing, {len(unexpected)} unexpected, {len(reshaped)} of another shape "
            f"(e.g. {(missing + unexpected + reshaped)[:3]})"
        )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"{weights}: weights do not fit the config: {str(error)[:300]}") from None
    return model.eval(), info


def same_input(members: list[str | Path], labels: list[str] | None = None) -> list[CheckpointInfo]:
    """The members' infos, once it is sure they expect the same input (image size, mean, std), as one ensemble
    needs; else CheckpointError listing each member's input under its label (default: its folder)."""
    infos = [read_info(member) for member in members]
    inputs = [(info.image_size, tuple(info.mean), tuple(info.std)) for info in infos]
    if len(set(inputs)) > 1:
        listed = "; ".join(f"{label}: {size} px, mean {mean}, std {std}"
                           for label, (size, mean, std) in zip(labels or map(str, members), inputs, strict=True))
        raise CheckpointError(f"ensemble members expect different input ({listed})")
    return infos


def save_ensemble(members: list[str | Path], folder: str | Path, member_facts: list[dict] | None = None,
                  extra: dict[str, Any] | None = None) -> Path:
    """Copies checkpoint folders into one ensemble folder, atomically (a temporary folder renamed at the end).

    The folder holds one checkpoint folder per member (`member-0/`, `member-1/`, ...: each loadable alone) and
    a `training.json` with the first member's `train_config` and `preprocessing` and, under `ensemble`, the
    members (their folders and `member_facts`). Every member must expect the same input (size, mean, std).

    Args:
        members: checkpoint folders (each one polyp.checkpoint.load_checkpoint loads).
        folder: the ensemble folder; an existing one is replaced only once the new one is complete.
        member_facts: per member, facts listed beside it in training.json (metrics, trial, seed, ...).
        extra: more facts for the ensemble's training.json (its own metrics, study, ...).

    Raises:
        CheckpointError: fewer than 2 members, a member that does not load, or members that expect
            different input (image size, mean, std).
    """
    if len(members) < 2:
        raise CheckpointError(f"an ensemble needs at least 2 members, got {len(members)}")
    infos = same_input(members)
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        listed = []
        for index, (member, facts) in enumerate(zip(members, member_facts or [{}] * len(members), strict=True)):
            shutil.copytree(member, staging / f"{MEMBER_PREFIX}{index}")
            listed.append({"folder": f"{MEMBER_PREFIX}{index}", **facts})
        first = infos[0]
        write_json(staging / TRAINING_FILE, {
            "train_config": first.config.to_dict(),
            "preprocessing": {"image_size": first.image_size, "mean": list(first.mean), "std": list(first.std),
                              "resize": "square, INTER_AREA", "input": "RGB uint8 / 255, then (x - mean) / std"},
            ENSEMBLE_KEY: {"members": listed, "how": "the mean of the members' probabilities (sigmoid of their "
                           "logits); the model returns its logit, so a threshold of 0.5 applies as to one model"},
            **(extra or {})})
        replace_folder(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def load_ensemble(folder: Path, data: dict) -> tuple[Ensemble, CheckpointInfo]:
    """The Ensemble of an ensemble folder whose training.json is `data`, and its CheckpointInfo."""
    listed = data[ENSEMBLE_KEY].get("members") if isinstance(data[ENSEMBLE_KEY], dict) else None
    if not listed or not all(isinstance(m, dict) and isinstance(m.get("folder"), str) for m in listed):
        raise CheckpointError(f"{folder}/training.json: '{ENSEMBLE_KEY}' lists no members")
    models, infos = [], []
    for member in listed:
        path = (folder / member["folder"]).resolve()
        if folder.resolve() not in path.parents:
            raise CheckpointError(f"{folder}: member folder {member['folder']!r} lies outside the ensemble folder")
        model, info = load_checkpoint(path)
        models.append(model)
        infos.append(info)
    info = read_info(folder)
    for member, member_info in zip(listed, infos, strict=True):
        if (member_info.image_size, member_info.mean, member_info.std) != (info.image_size, info.mean, info.std):
            raise CheckpointError(f"{folder}/{member['folder']}: expects other input than the ensemble "
                                  f"({member_info.image_size} px, mean {member_info.mean})")
    return Ensemble(models).eval(), info


def deep_supervision_usage(model: nn.Module) -> dict[str, Any]:
    """What training.json says about a deep-supervised UNet++: its heads and which one predicts."""
    return {
        "heads": model.heads, "supervised_nodes": [*model.supervised_nodes, "final"],
        "prediction_head": "last",
        "how_to_use": "trained with the loss averaged over every head; predicts with the last head (smp's own "
                      "output). The weights are a plain UnetPlusPlus (the 1x1 heads of the earlier top-row nodes "
                      "served training only and are not saved), so segmentation_models_pytorch.from_pretrained "
                      "and polyp.checkpoint.load_checkpoint both load it as it is.",
    }


def saved_class_name(model: nn.Module) -> str:
    """The model class `config.json` names: smp's own class for our subclasses of it (smp builds that one)."""
    return getattr(model, "saved_as", type(model).__name__)


def build_model_for(cfg: TrainConfig) -> nn.Module:
    """The untrained model that predicts for `cfg`, without fetching any encoder weights (a deep-supervised
    UNet++ predicts as the plain one)."""
    return build_model(parse_config({"encoder_weights": "none", "deep_supervision": False}, base=cfg))


__all__ = ["CheckpointError", "CheckpointInfo", "load_checkpoint", "load_ensemble", "preprocessing", "read_info",
           "save_checkpoint", "save_ensemble"]
