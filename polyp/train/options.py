"""The command-line flags of TrainConfig: one optional `--flag` per field, shared by `polyp.train` and `polyp.bench`.

Example:
    >>> import argparse
    >>> from polyp.train.options import config_arguments, config_from_args
    >>> parser = argparse.ArgumentParser()
    >>> config_arguments(parser)
    >>> config_from_args(parser.parse_args(["--encoder-depth", "4", "--image-size", "64"])).encoder_depth
    4
"""

from __future__ import annotations

import argparse

from polyp.config import FIELDS, TrainConfig, parse_config


def config_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds one optional --flag per TrainConfig field (e.g. --encoder-depth), default: unset."""
    group = parser.add_argument_group("training config (defaults from polyp.config.TrainConfig)")
    for name, field in FIELDS.items():
        group.add_argument(f"--{name.replace('_', '-')}", dest=f"cfg_{name}", default=None,
                           help=f"default {field.default!r}")


def config_from_args(args: argparse.Namespace, base: TrainConfig | None = None) -> TrainConfig:
    """The TrainConfig of the --flags that were given, over `base`.

    Raises:
        ConfigError: a flag's value does not fit its field; the message names the field.
    """
    given = {name: getattr(args, f"cfg_{name}") for name in FIELDS if getattr(args, f"cfg_{name}") is not None}
    return parse_config(given, base)
