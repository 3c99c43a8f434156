"""The search space: one pure function from a trial to a TrainConfig, the only caller of trial.suggest_*.

Conditional fields are suggested only where they mean something (decoder attention for archs that
have it, the encoder for smp archs, Tversky/focal settings for losses that use them, momentum for SGD),
and the study file was checked so that every arch x encoder x depth it offers can be built.

Example:
    >>> import optuna
    >>> from search.study.space import suggest
    >>> from search.study.definition import load_study
    >>> spec = load_study("demo")
    >>> cfg = suggest(optuna.trial.FixedTrial({"lr": 1e-3, "encoder": "resnet18"}), spec)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import optuna

from polyp.architectures import ARCHITECTURES
from polyp.config import FIELDS, TrainConfig, field_type, parse_config
from polyp.losses import parse_loss_spec
from search.study.definition import Range, StudySpec

_CONDITIONS = {
    "decoder_attention": lambda chosen: ARCHITECTURES[chosen["arch"]].takes_decoder_attention,
    "deep_supervision": lambda chosen: ARCHITECTURES[chosen["arch"]].takes_deep_supervision,
    "encoder": lambda chosen: ARCHITECTURES[chosen["arch"]].takes_encoder,
    "encoder_weights": lambda chosen: ARCHITECTURES[chosen["arch"]].takes_encoder,
    "tversky_alpha": lambda chosen: "tversky" in _loss_names(chosen["loss"]),
    "tversky_beta": lambda chosen: "tversky" in _loss_names(chosen["loss"]),
    "focal_gamma": lambda chosen: "focal" in _loss_names(chosen["loss"]),
    "momentum": lambda chosen: chosen["optimizer"] == "sgd",
    "warmup_epochs": lambda chosen: chosen["schedule"] != "onecycle",
}
_FIRST = ("arch", "loss", "optimizer", "schedule")  # fields the conditions look at


def _loss_names(spec: str) -> set[str]:
    return {name for _, name in parse_loss_spec(spec)}


def _suggest_one(trial: optuna.trial.BaseTrial, name: str, entry: list[Any] | Range) -> Any:
    if isinstance(entry, list):
        return trial.suggest_categorical(name, entry)
    if field_type(FIELDS[name]) is int:
        return trial.suggest_int(name, int(entry.low), int(entry.high), step=int(entry.step or 1), log=entry.log)
    return trial.suggest_float(name, entry.low, entry.high, log=entry.log, step=entry.step)


def suggest(trial: optuna.trial.BaseTrial, spec: StudySpec) -> TrainConfig:
    """Samples one TrainConfig from `spec.space` over `spec.base`.

    Args:
        trial: an Optuna trial (or FixedTrial for tests).
        spec: the study definition.

    Returns:
        The config to train; always buildable.
    """
    chosen: dict[str, Any] = {name: getattr(spec.base, name) for name in _FIRST}
    ordered = [n for n in _FIRST if n in spec.space] + [n for n in spec.space if n not in _FIRST]
    values: dict[str, Any] = {}
    for name in ordered:
        condition = _CONDITIONS.get(name)
        if condition is not None and not condition(chosen):
            continue
        values[name] = chosen[name] = _suggest_one(trial, name, spec.space[name])
    architecture = ARCHITECTURES[chosen["arch"]]
    if not architecture.takes_decoder_attention:
        values["decoder_attention"] = "none"
    if not architecture.takes_deep_supervision:
        values["deep_supervision"] = False
    if not architecture.takes_encoder:  # no ImageNet weights for it; a weights file still works
        values["encoder_weights"] = "none" if spec.base.encoder_weights == "imagenet" else spec.base.encoder_weights
    return parse_config(values, base=spec.base)
