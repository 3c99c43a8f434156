"""One frozen training configuration and the one parser that builds it from any mapping.

Example:
    >>> from polyp.config import TrainConfig, parse_config
    >>> cfg = parse_config({"arch": "linknet", "lr": "1e-3", "encoder_depth": "4"})
    >>> cfg.encoder_depth
    4
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polyp.architectures import ARCHITECTURES
from polyp.errors import PolypError

ARCHS = tuple(ARCHITECTURES)
OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULES = ("onecycle", "cosine", "plateau", "constant")
AUGMENTS = ("none", "light", "medium", "heavy")
PHOTOMETRICS = ("none", "light", "strong")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")
DECODER_ATTENTIONS = ("none", "scse")


class ConfigError(PolypError):
    """A configuration value or key that cannot be used; the message names the key."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides how one model is built and trained."""

    arch: str = "unetplusplus"  # one of ARCHS
    encoder: str = "mobilenet_v2"  # smp encoder name (ignored by attention_unet)
    encoder_depth: int = 5  # encoder stages, 3..5; decoder channels follow from it
    encoder_weights: str = "none"  # none | imagenet | path to a .safetensors/.pth weights file
    decoder_attention: str = "none"  # none | scse (archs that take it, see polyp.architectures)
    deep_supervision: bool = False  # UNet++ only: train a head on every top-row node, loss = their mean
    image_size: int = 256  # pixels, square input side; multiple of 2**encoder_depth
    batch_size: int = 8  # images per step
    epochs: int = 25  # training epochs (upper bound when early stopping)
    optimizer: str = "adamw"  # adamw | adam | sgd
    lr: float = 3e-3  # peak learning rate
    weight_decay: float = 1e-2  # decoupled for adamw (torch's AdamW default), L2 for adam/sgd
    momentum: float = 0.9  # sgd only
    schedule: str = "onecycle"  # onecycle | cosine | plateau | constant
    warmup_epochs: float = 1.0  # linear warm-up length in epochs (cosine, plateau, constant)
    loss: str = "bce+dice"  # weighted sum, e.g. "bce+0.5*dice" or "dice+focal+tversky"
    tversky_alpha: float = 0.3  # tversky weight of false positives
    tversky_beta: float = 0.7  # tversky weight of false negatives
    focal_gamma: float = 2.0  # focal loss focusing exponent
    augment: str = "medium"  # none | light | medium | heavy
    photometric: str = "none"  # none | light | strong: colour, brightness, contrast, gamma, hue, blur, JPEG, CLAHE
    multi_scale: bool = False  # PraNet's rescale of each batch to 0.75, 1 or 1.25 x image_size (multiples of 32)
    swa_epochs: int = 0  # average the weights of the last N epochs of the schedule (torch.optim.swa_utils); 0 = off
    early_stop_patience: int = 0  # epochs without val Dice gain before stopping; 0 = off
    grad_clip: float = 0.0  # max gradient L2 norm; 0 = off
    precision: str = "auto"  # auto (bf16 where the device supports it) | fp32 | bf16 | fp16
    channels_last: bool = True  # NHWC memory format (faster convolutions on CPU and GPU)
    compile: bool = False  # torch.compile the model
    threads: int = 0  # torch intra-op threads; 0 = all cores
    loader_workers: int = -1  # processes preparing batches; -1 = auto (0 where training uses every core), 0 = none
    seed: int = 0  # seeds model init, data order and augmentation
    device: str = "auto"  # auto | cpu | cuda

    def __post_init__(self) -> None:
        validate(self)

    def to_dict(self) -> dict[str, Any]:
        """Returns the config as a plain JSON-able dict."""
        return dataclasses.asdict(self)


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}

_CHOICES = {
    "arch": ARCHS,
    "optimizer": OPTIMIZERS,
    "schedule": SCHEDULES,
    "augment": AUGMENTS,
    "photometric": PHOTOMETRICS,
    "precision": PRECISIONS,
    "device": DEVICES,
    "decoder_attention": DECODER_ATTENTIONS,
}
_RANGES = {  # inclusive bounds
    "encoder_depth": (3, 5),
    "image_size": (32, 2048),
    "batch_size": (1, 1024),
    "epochs": (1, 10_000),
    "lr": (1e-7, 10.0),
    "weight_decay": (0.0, 1.0),
    "momentum": (0.0, 1.0),
    "warmup_epochs": (0.0, 1000.0),
    "tversky_alpha": (0.0, 1.0),
    "tversky_beta": (0.0, 1.0),
    "focal_gamma": (0.0, 10.0),
    "early_stop_patience": (0, 10_000),
    "swa_epochs": (0, 10_000),
    "grad_clip": (0.0, 1e6),
    "threads": (0, 1024),
    "loader_workers": (-1, 64),
    "seed": (0, 2**32 - 1),
}


def validate(cfg: TrainConfig) -> None:
    """Checks every field's type, choice and range, and the combinations that cannot be built."""
    for name, field in FIELDS.items():
        value = getattr(cfg, name)
        expected = field_type(field)
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            object.__setattr__(cfg, name, float(value))
            value = float(value)
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise ConfigError(f"{name}: expected {expected.__name__}, got {value!r}")
        if expected is float and not math.isfinite(value):
            raise ConfigError(f"{name}: must be a finite number, got {value!r}")
        if name in _CHOICES and value not in _CHOICES[name]:
            raise ConfigError(f"{name}: {value!r} is not one of {', '.join(_CHOICES[name])}")
        if name in _RANGES:
            low, high = _RANGES[name]
            if not low <= value <= high:
                raise ConfigError(f"{name}: {value!r} is outside [{low}, {high}]")
    if cfg.lr <= 0:
        raise ConfigError(f"lr: must be positive, got {cfg.lr!r}")
    if problem := check_image_size(cfg.image_size, cfg.encoder_depth):
        raise ConfigError(f"image_size: {problem}")
    from polyp.losses import parse_loss_spec  # local: losses imports torch, config stays light

    try:
        parse_loss_spec(cfg.loss)
    except ValueError as error:
        raise ConfigError(f"loss: {error}") from None


def check_image_size(image_size: int, encoder_depth: int) -> str | None:
    """The one image-size rule: the side must be a multiple of 2**encoder_depth (the encoder's total stride).

    Args:
        image_size: the square input side in pixels.
        encoder_depth: the number of encoder stages.

    Returns:
        None when the size fits, else the problem without a key, e.g.
        "50 is not a multiple of 2**encoder_depth = 16; use e.g. 48"; callers put the key or flag in front.
    """
    stride = 2**encoder_depth
    if image_size % stride == 0:
        return None
    return (f"{image_size} is not a multiple of 2**encoder_depth = {stride}; "
            f"use e.g. {max(stride, round(image_size / stride) * stride)}")


def field_type(field: dataclasses.Field) -> type:
    """The type a TrainConfig field holds (str, int, float or bool), without its `| None`."""
    hint = field.type
    if isinstance(hint, str):
        hint = {"str": str, "int": int, "float": float, "bool": bool}[hint]
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = typing.get_args(hint)[0]
    return hint


def _coerce(name: str, value: Any) -> Any:
    expected = field_type(FIELDS[name])
    if isinstance(value, str):
        text = value.strip()
        if expected is str:
            return text
        if expected is bool:
            lowered = text.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ConfigError(f"{name}: expected true/false, got {value!r}")
        try:
            number = float(text)
        except ValueError:
            raise ConfigError(f"{name}: expected {expected.__name__}, got {value!r}") from None
        value = number
    if expected is int and isinstance(value, float):
        if not value.is_integer():
            raise ConfigError(f"{name}: expected a whole number, got {value!r}")
        return int(value)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def parse_config(values: Mapping[str, Any], base: TrainConfig | None = None) -> TrainConfig:
    """Builds a TrainConfig from any mapping (CSV row, trial params, JSON), coercing by field type.

    Args:
        values: field names to values; strings are coerced ("1e-3" -> 0.001, "true" -> True).
            Empty strings and None mean "keep the base value".
        base: the config whose values fill the fields `values` leaves out (defaults if None).

    Returns:
        A validated TrainConfig.

    Raises:
        ConfigError: an unknown key or a bad value; the message names the key.
    """
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(unknown)}; valid keys are: {', '.join(FIELDS)}"
        )
    changes = {
        name: _coerce(name, value)
        for name, value in values.items()
        if value is not None and not (isinstance(value, str) and not value.strip())
    }
    return dataclasses.replace(base or TrainConfig(), **changes)


def load_config(path: str | Path) -> TrainConfig:
    """Reads a TrainConfig from a JSON file (a plain dict or one under a "train_config" key)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ConfigError(f"{path}: cannot read a config: {error}") from None
    if isinstance(data, dict) and "train_config" in data:
        data = data["train_config"]
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object of config fields")
    try:
        return parse_config(data)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
