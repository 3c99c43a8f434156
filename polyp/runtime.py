"""Device, precision and input normalisation shared by training, prediction and benchmarks."""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from polyp.config import ConfigError
from polyp.data.augment import IMAGENET_MEAN, IMAGENET_STD


def resolve_device(name: str = "auto") -> torch.device:
    """"auto" picks CUDA when available, else the CPU; "cuda" without a GPU is a ConfigError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: cuda was asked for but no CUDA GPU is available; use --device cpu or auto")
    return torch.device(name)


def cpu_supports_bf16() -> bool:
    """True when the CPU has native bfloat16 matrix units (AVX512-BF16 or AMX), where bf16 autocast pays."""
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def resolve_precision(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `name` on `device`, or None for plain float32.

    "auto" means bf16 on CPUs with bf16 units and on GPUs that support it, fp16 on older GPUs, else fp32.
    """
    if name == "fp32":
        return None
    if name == "bf16":
        return torch.bfloat16
    if name == "fp16":
        return torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_supports_bf16() else None


def autocast(device: torch.device, dtype: torch.dtype | None):
    """An autocast context for `dtype`, or a no-op for float32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


_FLOAT32_CLASSES: dict[type, type] = {}


def _float32_class(cls: type) -> type:
    """A subclass of the convolution class `cls` whose forward pass runs in float32 inside autocast while
    gradients are recorded (training); without them (validation, prediction) it runs as `cls` does."""
    if cls not in _FLOAT32_CLASSES:
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if not torch.is_grad_enabled():
                return cls.forward(self, x)
            with torch.autocast(x.device.type, enabled=False):
                return cls.forward(self, x.float())

        _FLOAT32_CLASSES[cls] = type(f"Float32{cls.__name__}", (cls,), {"forward": forward, "__module__": __name__})
    return _FLOAT32_CLASSES[cls]


def strided_depthwise_in_float32(model: nn.Module, device: torch.device, dtype: torch.dtype | None) -> int:
    """Runs the model's strided depthwise convolutions in float32 when it trains under bf16 autocast on the CPU.

    oneDNN's bfloat16 backward pass of depthwise convolutions with stride 2 is several times slower than its
    float32 one, while those layers hold a tiny share of the FLOPs: with them in float32 the whole training
    step of mobilenet_v2 and efficientnet-b0 models runs 13-18% faster (measured with `polyp.bench`).
    Stride-1 depthwise and ordinary convolutions are faster in bf16 and stay there, and so do these layers
    when no gradients are recorded (validation, prediction: the forward pass alone is faster in bf16). The
    modules keep their weights and state-dict names (only their class changes). Returns how many were switched.
    """
    if device.type != "cpu" or dtype != torch.bfloat16:
        return 0
    switched = 0
    for module in model.modules():
        if (isinstance(module, nn.Conv2d) and module.groups > 1 and module.groups == module.in_channels
                and max(module.stride) > 1 and type(module) not in _FLOAT32_CLASSES.values()):
            module.__class__ = _float32_class(type(module))
            switched += 1
    return switched


def count_float32_convolutions(model: nn.Module) -> int:
    """How many of the model's convolutions `strided_depthwise_in_float32` switched to float32."""
    return sum(type(module) in _FLOAT32_CLASSES.values() for module in model.modules())


class Normalizer:
    """Turns uint8 image batches (N,3,H,W) into normalised float input on the device."""

    def __init__(self, device: torch.device, channels_last: bool = True, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        self.mean = torch.tensor(mean, device=device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(std, device=device).view(1, 3, 1, 1) * 255
        self.device, self.channels_last = device, channels_last

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = (images.to(self.device, non_blocking=True).float() - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x
