"""What a command line forces on a study, turned into settings once and applied once.

Run settings (`--data`, `--test-list`, `--sampler`, `--pruner`, `--seed`) replace the study's `[run]` values.
Training settings (`--epochs`, `--image-size`, `--device`, `--threads`, `--loader-workers`, `--encoder-weights`) are forced on every trial: the study's fixed
config takes them, and `apply_forced` sets them again on each trial's config after sampling (or after a
replayed CSV row), so that they beat a searched or spreadsheet value of the same field.

Example:
    >>> import argparse
    >>> forced_settings(argparse.Namespace(epochs=2, image_size=None, device="cpu"))
    {'epochs': 2, 'device': 'cpu'}
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any

from polyp.architectures import ARCHITECTURES
from polyp.config import ConfigError, TrainConfig, check_image_size, parse_config
from search.studies import StudySpec

FORCED_FIELDS = ("epochs", "image_size", "device", "threads", "loader_workers", "encoder_weights")  # set for every trial by a command line
RUN_FLAGS = ("data", "test_list", "sampler", "pruner", "seed")  # [run] settings a command line replaces


def forced_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The training settings given on the command line (`--epochs`, `--image-size`, `--device`)."""
    return {name: getattr(args, name) for name in FORCED_FIELDS if getattr(args, name, None) is not None}


def with_command_line(spec: StudySpec, args: argparse.Namespace) -> StudySpec:
    """The study as this command runs it: its run settings and forced training settings from `args`.

    Raises:
        ConfigError: a forced value the study cannot use (e.g. an image size that a searched encoder depth
            does not divide), naming the flag.
    """
    run = replace(spec.run, **{name: getattr(args, name) for name in RUN_FLAGS if getattr(args, name, None) is not None})
    forced = forced_settings(args)
    base = spec.base
    if "image_size" in forced:
        depths = spec.space.get("encoder_depth", [base.encoder_depth])  # a list: the study refuses depth ranges
        for depth in depths:
            if problem := check_image_size(forced["image_size"], depth):
                where = "is searched" if "encoder_depth" in spec.space else "is the study's"
                raise ConfigError(f"--image-size {forced['image_size']} does not fit encoder_depth {depth} (2**{depth}; "
                                  f"it {where}): {problem}")
        if check_image_size(forced["image_size"], base.encoder_depth):  # a [train] depth the space overrides
            base = replace(base, encoder_depth=min(depths))
    return replace(spec, run=run, base=parse_config(forced, base=base), forced=forced)


def apply_forced(config: TrainConfig, spec: StudySpec) -> TrainConfig:
    """A trial's config with the command line's forced settings (the last step of building it)."""
    forced = spec.forced
    if forced.get("encoder_weights") == "imagenet" and not ARCHITECTURES[config.arch].takes_encoder:
        forced = {name: value for name, value in forced.items() if name != "encoder_weights"}  # no ImageNet encoder
    return parse_config(forced, base=config) if forced else config
