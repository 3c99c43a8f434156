"""Registries of Optuna samplers and pruners by name, built from a study's run settings."""

from __future__ import annotations

import math
from typing import Any

import optuna

from polyp.config import FIELDS, field_type
from search.study.definition import (
    LATENCY_GP_PROBLEM,
    PRUNERS,
    SAMPLERS,
    Range,
    StudyError,
    StudySpec,
    sampler_pruner_problem,
)


def grid_space(spec: StudySpec) -> dict[str, list[Any]]:
    """The grid of a study: categorical choices as they are, numeric ranges as low, (mid,) high."""
    grid: dict[str, list[Any]] = {}
    for name, entry in spec.space.items():
        if isinstance(entry, list):
            grid[name] = entry
        elif entry.log:
            grid[name] = [entry.low, math.sqrt(entry.low * entry.high), entry.high]
        else:
            grid[name] = [entry.low, (entry.low + entry.high) / 2, entry.high]
        if isinstance(entry, Range) and field_type(FIELDS[name]) is int:
            grid[name] = sorted({int(round(v)) for v in grid[name]})
    return grid


def build_sampler(name: str, spec: StudySpec, seed: int) -> optuna.samplers.BaseSampler:
    """The sampler `name` (tpe, random, gp, grid, nsga2), seeded; TPE, NSGA-II, random and grid also search
    two objectives (`[run].objectives`)."""
    startup = spec.run.startup_trials
    makers = {
        "tpe": lambda: optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, multivariate=True,
                                                  group=True, constant_liar=True),
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
        "gp": lambda: optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup),
        "grid": lambda: optuna.samplers.GridSampler(grid_space(spec), seed=seed),
        # NSGA-II: each generation holds startup_trials trials (at least 4); the first is sampled at random
        "nsga2": lambda: optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, startup)),
    }
    if name not in makers:
        raise StudyError(f"sampler: {name!r} is not one of {', '.join(SAMPLERS)}")
    if name == "gp" and spec.run.max_latency_ms:
        raise StudyError(f"--sampler gp with max_latency_ms {spec.run.max_latency_ms:g}: {LATENCY_GP_PROBLEM}")
    return makers[name]()


def seeded_sampler(spec: StudySpec, trial_number: int) -> optuna.samplers.BaseSampler:
    """The study's sampler for trial `trial_number`, seeded with seed + number: workers started with the same
    seed then sample different configs, and a study resumed or run again samples the same ones."""
    return build_sampler(spec.run.sampler, spec, spec.run.seed + trial_number)


def build_pruner(name: str, spec: StudySpec) -> optuna.pruners.BasePruner:
    """The pruner `name` (median, hyperband, sha, none) with the study's warm-up and epochs.

    Refuses a pruner the study's sampler cannot search under (gp learns from complete trials only). A
    two-objective study gets Optuna's NopPruner whatever `name` says: Optuna prunes single-objective studies only.
    """
    if not spec.run.multi_objective and (problem := sampler_pruner_problem(spec.run.sampler, name)):
        raise StudyError(f"--sampler/--pruner: {problem}")
    warmup, epochs = spec.run.warmup_epochs, spec.base.epochs
    makers = {
        "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=spec.run.pruner_startup_trials,
                                                        n_warmup_steps=warmup),
        "hyperband": lambda: optuna.pruners.HyperbandPruner(min_resource=max(1, warmup), max_resource=epochs,
                                                            reduction_factor=3),
        "sha": lambda: optuna.pruners.SuccessiveHalvingPruner(min_resource=max(1, warmup), reduction_factor=3),
        "none": optuna.pruners.NopPruner,
    }
    if name not in makers:
        raise StudyError(f"pruner: {name!r} is not one of {', '.join(PRUNERS)}")
    return optuna.pruners.NopPruner() if spec.run.multi_objective else makers[name]()
