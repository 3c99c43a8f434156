"""What a command line forces on a study, turned into settings once and applied once.

Run settings (`--data`, `--test-list`, `--sampler`, `--pruner`, `--seed`) replace the study's `[run]` values.
Training settings (`--epochs`, `--image-size`, `--device`, `--threads`, `--loader-workers`, `--encoder-weights`)
are forced on every trial: the study's fixed config takes them, and `apply_forced` sets them again on each
trial's config after sampling (or after a replayed CSV row), so that they beat a searched or spreadsheet value
of the same field. `search.cli` reads them off the command line once, into a `CommandSettings`.

Example:
    >>> settings = CommandSettings(training={"epochs": 2, "device": "cpu"})
    >>> settings.without("device").training
    {'epochs': 2}
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from polyp.architectures import ARCHITECTURES
from polyp.config import ConfigError, TrainConfig, check_image_size, parse_config
from search.study.definition import StudySpec, objectives_problem

FORCED_FIELDS = ("epochs", "image_size", "device", "threads", "loader_workers", "encoder_weights")  # set for every trial by a command line
RUN_FLAGS = ("data", "test_list", "groups", "val_data", "val_limit", "objective", "objectives", "sampler", "pruner",
             "seed")  # [run] settings a command line replaces


@dataclass(frozen=True)
class CommandSettings:
    """What one command line sets: `[run]` values it replaces and training values it forces on every trial.

    Only the settings the user gave are present; an empty one changes nothing.
    """

    run: dict[str, Any] = field(default_factory=dict)  # RUN_FLAGS names -> value
    training: dict[str, Any] = field(default_factory=dict)  # FORCED_FIELDS names -> value

    def __post_init__(self):
        unknown = sorted(set(self.run) - set(RUN_FLAGS)) + sorted(set(self.training) - set(FORCED_FIELDS))
        if unknown:
            raise ValueError(f"CommandSettings: unknown settings {unknown}")

    def without(self, *names: str) -> CommandSettings:
        """These settings less the named training settings (e.g. a refit's size, which is not its search's)."""
        return replace(self, training={k: v for k, v in self.training.items() if k not in names})

    def with_training(self, **values: Any) -> CommandSettings:
        """These settings with more training settings forced."""
        return replace(self, training={**self.training, **values})


def with_command_line(spec: StudySpec, settings: CommandSettings) -> StudySpec:
    """The study as this command runs it: its run settings and forced training settings from `settings`.

    Raises:
        ConfigError: a forced value the study cannot use (e.g. an image size that a searched encoder depth
            does not divide), naming the flag.
    """
    run = replace(spec.run, **{name: tuple(value) if isinstance(value, list) else value
                               for name, value in settings.run.items()})
    if problem := run.data_problem(objective=False):  # the objective: check_objective, once the sets are known
        raise ConfigError(data_message(spec, settings, *problem))
    if problem := objectives_problem(run):
        where = "--objectives" if "objectives" in settings.run else f"study {spec.name}'s [run].objectives"
        raise ConfigError(f"{where}: {problem}")
    forced = dict(settings.training)
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


def data_message(spec: StudySpec, settings: CommandSettings, key: str, problem: str) -> str:
    """A data setting's problem, said under the flag that gave it or the study's `[run]` key."""
    if key == "data":
        return problem
    where = f"--{key.replace('_', '-')}" if key in settings.run else f"study {spec.name}'s [run].{key}"
    return f"{where}: {problem}"


def check_objective(spec: StudySpec, settings: CommandSettings) -> None:
    """Refuses an objective that names none of the study's sets (as the command runs it: with the sets its
    command line gives or its trials were run with), naming the flag or key."""
    if problem := spec.run.data_problem():
        raise ConfigError(data_message(spec, settings, *problem))


def apply_forced(config: TrainConfig, spec: StudySpec) -> TrainConfig:
    """A trial's config with the command line's forced settings (the last step of building it)."""
    forced = spec.forced
    if forced.get("encoder_weights") == "imagenet" and not ARCHITECTURES[config.arch].takes_encoder:
        forced = {name: value for name, value in forced.items() if name != "encoder_weights"}  # no ImageNet encoder
    return parse_config(forced, base=config) if forced else config
