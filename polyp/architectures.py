"""The architectures a TrainConfig can name, and what each one takes; importable without torch.

Adding an architecture means adding its entry here and its model class to `polyp.models.MODEL_CLASSES`.

Example:
    >>> from polyp.architectures import ARCHITECTURES
    >>> ARCHITECTURES["unet"].takes_decoder_attention
    True
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Architecture:
    """What one architecture's constructor takes."""

    takes_encoder: bool  # builds on an smp encoder chosen by `encoder` (ImageNet weights exist for it)
    takes_decoder_attention: bool  # has smp's decoder_attention_type (scse)
    takes_deep_supervision: bool = False  # can supervise every top-row node (polyp.models.deep_supervision)


_SMP = Architecture(takes_encoder=True, takes_decoder_attention=False)
_SMP_WITH_ATTENTION = Architecture(takes_encoder=True, takes_decoder_attention=True)

ARCHITECTURES: dict[str, Architecture] = {
    "unetplusplus": Architecture(takes_encoder=True, takes_decoder_attention=True, takes_deep_supervision=True),
    "linknet": _SMP,
    "unet": _SMP_WITH_ATTENTION,
    "fpn": _SMP,
    "deeplabv3plus": _SMP,
    "manet": _SMP,
    "attention_unet": Architecture(takes_encoder=False, takes_decoder_attention=False),  # polyp.models.attention_unet
}
