"""Study definitions: a TOML file in studies/ naming the search space and the run's defaults.

A file has four tables: [study] (name, description), [run] (data, sampler, pruner and their settings),
[train] (fixed TrainConfig values) and [space] (TrainConfig fields to search: a list is a categorical
choice, a table {low, high, log, step} a numeric range).

Example:
    >>> from search.study.definition import load_study
    >>> spec = load_study("demo")  # studies/demo.toml
    >>> spec.run.sampler
    'tpe'
"""

from __future__ import annotations

import dataclasses
import itertools
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polyp.architectures import ARCHITECTURES
from polyp.config import FIELDS, ConfigError, TrainConfig, check_image_size, field_type, parse_config
from polyp.data import DataError, DataSource, training_sources, validation_sources
from polyp.models import is_buildable
from polyp.selection import objective_problem
from search.study.errors import StudyError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

STUDIES_DIR = Path(__file__).resolve().parents[2] / "studies"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
SAMPLERS = ("tpe", "random", "gp", "grid", "nsga2")
PRUNERS = ("median", "hyperband", "sha", "none")
LATENCY_GP_PROBLEM = ("sampler 'gp' cannot learn a latency limit: its models read complete trials only, and a "
                      "model over the limit is pruned before it trains; use sampler 'tpe'")
LATENCY_MODES = ("onnx", "torch", "none")  # [run].latency: what each trial's model is timed with (polyp.latency)
OBJECTIVE_SETS = (("mdice",), ("mdice", "latency_ms"))  # [run].objectives: what a study optimises, in order
DIRECTIONS = {"mdice": "maximize", "latency_ms": "minimize"}
MULTI_OBJECTIVE_PRUNING = ("Optuna prunes single-objective studies only (Trial.report does not take two values), so "
                           "every trial trains to the end and the pruner is not used; a max_latency_ms limit still "
                           "stops a too-slow model before it trains")


DATA_LISTS = ("data", "test_list", "groups", "val_data", "objectives")  # [run] keys that take one value or a list


def as_list(value: str | tuple[str, ...] | list[str]) -> list[str]:
    """A data setting as a list: a string is one value (an empty one none), a list its values."""
    if isinstance(value, str):
        return [value] if value else []
    return list(value)


@dataclass(frozen=True)
class RunSettings:
    """How a study runs when the command line does not say otherwise."""

    data: str | tuple[str, ...] = "synthetic"  # folder with images/ and masks/, "synthetic", or NAME=FOLDER sets
    test_list: str | tuple[str, ...] = ""  # file of test stems ([NAME=]FILE per set); empty = seeded fractions
    groups: tuple[str, ...] = ()  # NAME=CSV groups files (stem,group): a group stays on one side of each split
    val_data: tuple[str, ...] = ()  # NAME=FOLDER validation sets never trained on, scored every epoch
    val_limit: int = 0  # images scored of each val_data set (chosen once, by group); 0 = all
    objective: str = "mean"  # what trials are ranked and pruned by: mean | worst | a set's name (polyp.selection)
    objectives: tuple[str, ...] = ("mdice",)  # ("mdice",), or ("mdice", "latency_ms"): both, a Pareto front
    sampler: str = "tpe"  # tpe | random | gp | grid | nsga2
    pruner: str = "median"  # median (the measured default, see search.bench) | sha | hyperband | none
    startup_trials: int = 5  # trials sampled at random before the sampler's model kicks in
    pruner_startup_trials: int = 3  # complete trials the median pruner waits for before it compares (search.bench)
    warmup_epochs: int = 1  # epochs every trial runs before the pruner may stop it (sha/hyperband: first rung)
    sample_images: int = 6  # test images on each trial's prediction sheet
    val_fraction: float = 0.1  # share of images for validation
    test_fraction: float = 0.1  # share of images for testing (without test_list)
    seed: int = 0  # sampler and split seed
    synthetic_count: int = 96  # images generated when data = "synthetic"
    latency: str = "onnx"  # each trial's ms per frame: onnx (PyTorch and, on the CPU, ONNX Runtime) | torch | none
    max_latency_ms: float = 0.0  # a model slower than this per frame (its faster runtime) is pruned before it trains; 0 = no limit

    @property
    def multi_objective(self) -> bool:
        """Whether trials are ranked by validation mDice and latency together (a Pareto front, no pruning)."""
        return len(as_list(self.objectives)) > 1

    @property
    def directions(self) -> list[str]:
        """Optuna's direction of each objective."""
        return [DIRECTIONS[name] for name in as_list(self.objectives)]

    def sources(self) -> list[DataSource]:
        """The training sets (`polyp.data.training_sources`)."""
        return training_sources(as_list(self.data), as_list(self.test_list), as_list(self.groups),
                                as_list(self.val_data))

    def external(self) -> list[DataSource]:
        """The validation sets never trained on."""
        return validation_sources(as_list(self.val_data), as_list(self.groups), [s.name for s in self.sources()])

    def data_problem(self, objective: bool = True) -> tuple[str, str] | None:
        """The first data setting that cannot be used, as (key, why); None when they all hold.

        Args:
            objective: also check that the objective names a set (a study file that names no validation set
                may be given them on the command line, so its objective is checked there).
        """
        try:
            sources = self.sources()
            names = [s.name for s in sources]
            external = [s.name for s in self.external()]
        except DataError as error:
            return "data", str(error)
        if self.val_limit < 0:
            return "val_limit", f"{self.val_limit} is negative (0 = every image)"
        if objective and (problem := objective_problem(self.objective, names, external)):
            return "objective", problem
        return None


@dataclass(frozen=True)
class RefitSettings:
    """How `search.refit` trains a study's best configurations again (the `[refit]` table)."""

    top: int = 3  # best complete trials whose configurations are trained again
    seeds: int = 2  # runs per configuration, seeds 0..seeds-1
    folds: int = 0  # cross-validation folds of the non-test images; 0 = the study's validation split
    image_size: int = 0  # pixels; 0 = twice the study's, at most 352
    epochs: int = 0  # 0 = three times the study's

    def resolved(self, base: TrainConfig) -> RefitSettings:
        """These settings with the image size and epochs derived from the study's where they are 0."""
        size = self.image_size or min(352, base.image_size * 2)
        return dataclasses.replace(self, image_size=size - size % 32 or 32, epochs=self.epochs or 3 * base.epochs)


REFIT_SUFFIX = ".refit"  # the companion study of NAME, in the same storage, is NAME.refit
AUTO_STAGES = (".s1", ".s2")  # search.auto's search stages of NAME are the studies NAME.s1 and NAME.s2


@dataclass(frozen=True)
class Range:
    """A numeric search range."""

    low: float
    high: float
    log: bool = False
    step: float | None = None


@dataclass(frozen=True)
class StudySpec:
    """One study definition: name, run settings, the fixed config and the search space."""

    name: str
    description: str
    run: RunSettings
    base: TrainConfig
    space: dict[str, list[Any] | Range] = field(default_factory=dict)
    source: str = ""
    forced: dict[str, Any] = field(default_factory=dict)  # training settings a command line forces on every trial
    refit: RefitSettings = field(default_factory=RefitSettings)  # search.refit's defaults


def validate_study_name(name: str) -> str:
    """Returns `name` if it is safe as a study and folder name; refuses "/", ".." and the like."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name) or ".." in name:
        raise StudyError(
            f"study name {name!r} is not allowed: use letters, digits, '_', '-', '.' (no '/', no '..')"
        )
    return name


def study_path(name_or_path: str) -> Path:
    """The TOML file of a study name (studies/NAME.toml) or an explicit path."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" or candidate.is_file():
        if not candidate.is_file():
            raise StudyError(f"{candidate}: study file does not exist")
        return candidate
    validate_study_name(name_or_path)
    path = STUDIES_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        known = sorted(p.stem for p in STUDIES_DIR.glob("*.toml"))
        raise StudyError(f"unknown study {name_or_path!r}; known studies: {', '.join(known)} (or give a path to a .toml file)")
    return path


def sampler_pruner_problem(sampler: str, pruner: str) -> str | None:
    """Why `sampler` cannot search under `pruner`, or None.

    Optuna's GPSampler fits its model to complete trials only, so under a pruner it proposes a pruned point again
    and again (seen in search.bench: six identical trials in a row, each pruned after one epoch).
    """
    if sampler == "gp" and pruner != "none":
        return (f"sampler 'gp' with pruner {pruner!r}: Optuna's GPSampler learns from complete trials only, so it "
                "proposes pruned points again and again; use pruner 'none' with 'gp', or sampler 'tpe'")
    return None


def _check_table(table: dict, settings_class: type, name: str, where: str) -> None:
    """Refuses unknown keys and values of the wrong type in the `[name]` table of `settings_class`."""
    known = {f.name: f for f in dataclasses.fields(settings_class)}
    for key, value in table.items():
        if key not in known:
            raise StudyError(f"{where}[{name}].{key}: unknown key; valid keys: {', '.join(known)}")
        if settings_class is RunSettings and key in DATA_LISTS:
            if not (isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))):
                raise StudyError(f"{where}[{name}].{key}: expected a string or a list of strings, got {value!r}")
            continue
        expected = type(known[key].default)
        if expected is float and isinstance(value, int):
            continue
        if not isinstance(value, expected) or isinstance(value, bool) != (expected is bool):
            raise StudyError(f"{where}[{name}].{key}: expected {expected.__name__}, got {value!r}")


def refit_problem(settings: RefitSettings) -> tuple[str, str] | None:
    """The first of `settings` that breaks a rule, as (key, why); None when they all hold. The `[refit]` table
    and `search.refit`'s flags share these rules."""
    for key in ("top", "seeds"):
        if getattr(settings, key) < 1:
            return key, f"{getattr(settings, key)} must be at least 1"
    for key in ("folds", "image_size", "epochs"):
        if getattr(settings, key) < 0:
            return key, f"{getattr(settings, key)} is negative"
    if settings.folds == 1:
        return "folds", "1 fold leaves nothing to validate on; use 0 (the study's split) or 2+"
    if settings.image_size and (problem := check_image_size(settings.image_size, 5)):
        return "image_size", problem  # one size for every configuration: the deepest encoders' stride
    return None


def _refit_settings(table: dict, where: str) -> RefitSettings:
    _check_table(table, RefitSettings, "refit", where)
    settings = RefitSettings(**table)
    if problem := refit_problem(settings):
        raise StudyError(f"{where}[refit].{problem[0]}: {problem[1]}")
    return settings


def _run_settings(table: dict, where: str) -> RunSettings:
    _check_table(table, RunSettings, "run", where)
    settings = RunSettings(**{key: tuple(value) if isinstance(value, list) else value for key, value in table.items()})
    if problem := settings.data_problem(objective=bool(settings.val_data)):
        raise StudyError(f"{where}[run].{problem[0]}: {problem[1]}")
    for key in ("startup_trials", "pruner_startup_trials", "warmup_epochs", "sample_images"):
        if getattr(settings, key) < 0:
            raise StudyError(f"{where}[run].{key}: {getattr(settings, key)} is negative")
    if settings.sampler not in SAMPLERS:
        raise StudyError(f"{where}[run].sampler: {settings.sampler!r} is not one of {', '.join(SAMPLERS)}")
    if settings.pruner not in PRUNERS:
        raise StudyError(f"{where}[run].pruner: {settings.pruner!r} is not one of {', '.join(PRUNERS)}")
    if not settings.multi_objective and (problem := sampler_pruner_problem(settings.sampler, settings.pruner)):
        raise StudyError(f"{where}[run].sampler/pruner: {problem}")  # two objectives: nothing is pruned
    if settings.latency not in LATENCY_MODES:
        raise StudyError(f"{where}[run].latency: {settings.latency!r} is not one of {', '.join(LATENCY_MODES)}")
    if settings.max_latency_ms < 0:
        raise StudyError(f"{where}[run].max_latency_ms: {settings.max_latency_ms} is negative (0 = no limit)")
    if settings.max_latency_ms and settings.sampler == "gp":
        raise StudyError(f"{where}[run].max_latency_ms: {LATENCY_GP_PROBLEM}")
    if settings.max_latency_ms and settings.latency == "none":
        raise StudyError(f"{where}[run].max_latency_ms: needs the trials timed; latency = \"none\" times nothing")
    if problem := objectives_problem(settings):
        raise StudyError(f"{where}[run].objectives: {problem}")
    return settings


def objectives_problem(settings: RunSettings) -> str | None:
    """Why `settings.objectives` cannot be searched, or None."""
    objectives = tuple(as_list(settings.objectives))
    if objectives not in OBJECTIVE_SETS:
        return (f"{list(objectives)} is not one of {', '.join(str(list(o)) for o in OBJECTIVE_SETS)} (\"mdice\" is "
                f"the validation score [run].objective ranks by; \"latency_ms\" each model's ms per frame, minimised)")
    if "latency_ms" in objectives and settings.latency == "none":
        return "\"latency_ms\" needs the trials timed; latency = \"none\" times nothing"
    return None


def _space_entry(key: str, value: Any, base: TrainConfig, where: str) -> list[Any] | Range:
    if key not in FIELDS:
        raise StudyError(f"{where}[space].{key}: not a TrainConfig field; valid: {', '.join(FIELDS)}")
    if key in ("image_size", "device", "seed"):
        raise StudyError(f"{where}[space].{key}: cannot be searched (images are decoded once at one size, and "
                         f"device and seed are run settings); set it in [train]")
    if isinstance(value, list):
        if not value:
            raise StudyError(f"{where}[space].{key}: empty list of choices")
        for choice in value:
            try:
                parse_config({key: choice}, base=base)
            except ConfigError as error:
                raise StudyError(f"{where}[space].{key}: choice {choice!r} is invalid: {error}") from None
        return list(value)
    if isinstance(value, dict):
        unknown = set(value) - {"low", "high", "log", "step"}
        if unknown or not {"low", "high"} <= set(value):
            raise StudyError(f"{where}[space].{key}: a range needs low and high (and optionally log, step)")
        if field_type(FIELDS[key]) not in (int, float):
            raise StudyError(f"{where}[space].{key}: a range only works for numeric fields")
        span = Range(float(value["low"]), float(value["high"]), bool(value.get("log", False)), value.get("step"))
        if not span.low < span.high or (span.log and span.low <= 0):
            raise StudyError(f"{where}[space].{key}: need 0 < low < high for log ranges and low < high otherwise")
        if span.step is not None and (span.log or isinstance(span.step, bool) or not isinstance(span.step, (int, float))
                                      or not 0 < span.step <= span.high - span.low):
            raise StudyError(f"{where}[space].{key}: step must be a number in (0, high - low] and cannot be "
                             f"combined with log = true")
        for bound in (span.low, span.high):
            try:
                parse_config({key: int(bound) if field_type(FIELDS[key]) is int else bound}, base=base)
            except ConfigError as error:
                raise StudyError(f"{where}[space].{key}: bound {bound} is invalid: {error}") from None
        return span
    raise StudyError(f"{where}[space].{key}: expected a list of choices or a table {{low, high}}, got {value!r}")


def _check_combinations(spec: StudySpec, where: str) -> None:
    """Refuses spaces whose arch x encoder x depth choices include a model that cannot be built."""
    choices = {key: spec.space.get(key, [getattr(spec.base, key)]) for key in ("arch", "encoder", "encoder_depth")}
    if any(isinstance(c, Range) for c in choices.values()):
        raise StudyError(f"{where}[space]: arch, encoder and encoder_depth must be lists of choices")
    for arch, encoder, depth in itertools.product(*choices.values()):
        if problem := check_image_size(spec.base.image_size, depth):
            raise StudyError(f"{where}[train].image_size: {problem} (encoder_depth {depth} is in the space)")
        cfg = dataclasses.replace(spec.base, arch=arch, encoder=encoder, encoder_depth=depth, decoder_attention="none",
                                  deep_supervision=False)
        if cfg.encoder_weights == "imagenet" and arch in ARCHITECTURES and not ARCHITECTURES[arch].takes_encoder:
            cfg = dataclasses.replace(cfg, encoder_weights="none")  # as search.study.space builds it
        if not is_buildable(cfg):
            raise StudyError(f"{where}[space]: {arch} with encoder {encoder} at depth {depth} cannot be built; "
                             f"remove one of them from the space")


def parse_study(data: dict, name: str, where: str = "") -> StudySpec:
    """Builds a StudySpec from a parsed TOML document, naming the key of every problem."""
    unknown = set(data) - {"study", "run", "train", "space", "refit"}
    if unknown:
        raise StudyError(f"{where}{sorted(unknown)[0]}: unknown table; valid tables: study, run, train, space, refit")
    meta = data.get("study", {})
    for key in meta:
        if key not in ("name", "description"):
            raise StudyError(f"{where}[study].{key}: unknown key; valid keys: name, description")
    name = validate_study_name(meta.get("name", name))
    run = _run_settings(data.get("run", {}), where)
    train = dict(data.get("train", {}))
    depths = data.get("space", {}).get("encoder_depth")
    if "encoder_depth" not in train and isinstance(depths, list) and depths and all(isinstance(d, int) for d in depths):
        train["encoder_depth"] = min(depths)  # the searched depths decide, not the default of 5
    try:
        base = parse_config(train)
    except ConfigError as error:
        raise StudyError(f"{where}[train].{error}") from None
    space = {key: _space_entry(key, value, base, where) for key, value in data.get("space", {}).items()}
    spec = StudySpec(name, str(meta.get("description", "")), run, base, space, source=where.rstrip(": "),
                     refit=_refit_settings(data.get("refit", {}), where))
    _check_combinations(spec, where)
    return spec


def refit_study(source: StudySpec, settings: RefitSettings) -> StudySpec:
    """The companion study `search.refit` trains `source`'s best configurations in: its name + ".refit", no
    pruner and no latency limit (every run trains to the end; each is still timed, at the refit's size, so
    `search.export --max-latency-ms` can choose among them), the refit's image size and epochs."""
    settings = settings.resolved(source.base)
    folds = f", {settings.folds}-fold cross-validation" if settings.folds else ""
    return dataclasses.replace(
        source, name=f"{source.name}{REFIT_SUFFIX}", run=dataclasses.replace(source.run, pruner="none", max_latency_ms=0.0,
                                                                           objectives=("mdice",)),
        base=dataclasses.replace(source.base, image_size=settings.image_size, epochs=settings.epochs),
        description=f"refit of {source.name}: its {settings.top} best configurations at {settings.image_size} px, "
                    f"{settings.epochs} epochs, {settings.seeds} seeds{folds}", refit=settings)


def load_study(name_or_path: str) -> StudySpec:
    """Loads studies/NAME.toml (or a TOML path) into a validated StudySpec; NAME.refit is the companion
    study of NAME that `search.refit` writes (`refit_study`, with NAME's `[refit]` settings), NAME.s1 and NAME.s2
    the stages search.auto searches NAME's space in.

    Raises:
        StudyError: an unknown study, unreadable TOML, or a bad key (the message names it).
    """
    if name_or_path.endswith(REFIT_SUFFIX) and not Path(name_or_path).is_file():
        source = load_study(name_or_path[: -len(REFIT_SUFFIX)])
        return refit_study(source, source.refit)
    if name_or_path.endswith(AUTO_STAGES) and not Path(name_or_path).is_file():  # its trials keep their configs
        source = load_study(name_or_path[:-3])
        return dataclasses.replace(source, name=f"{source.name}{name_or_path[-3:]}")
    path = study_path(name_or_path)
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise StudyError(f"{path}: cannot read study file: {error}") from None
    return parse_study(data, path.stem, f"{path}: ")
