"""A refit's runs: which search trials are trained again, with which seeds and folds, on which split.

The runs are trials of the companion study NAME.refit in the search's storage, enqueued with their source
trial, seed and fold (`search.engine.record`'s refit_* attributes), so a rerun trains only what is left and
several workers share them. `--folds F` splits the non-test images into F folds, kept in the refit study's
`split.json`; the test split never changes.
"""

from __future__ import annotations

import dataclasses
import sys

import optuna
from optuna.trial import FrozenTrial

from polyp.data import PolypData, Split, prepare_data, split_groups
from search.engine.enqueue import PlannedTrial, enqueue_missing
from search.engine.record import (
    TrialRecord,
    record_refit_settings,
    record_run_data,
    record_run_dir,
    refit_attributes,
    refit_fold,
    refit_settings,
)
from search.engine.session import Session, StudyRequest, load_data, open_session
from search.engine.trial_loop import top_trials, trial_line
from search.study.definition import RefitSettings, refit_problem, refit_study
from search.study.errors import CommandLineError, StudyError
from search.study.forced import with_command_line
from search.study.imagenet import check_imagenet_available
from search.study.samplers import build_pruner

NO_FOLD = -1  # a run that validates on the study's own split


def refit_sources(study: optuna.Study, top: int) -> list[FrozenTrial]:
    """The `top` complete trials with the highest value (StudyError when there is none)."""
    best = top_trials(study, top)
    if not best:
        raise StudyError(f"study {study.study_name} has no complete trial to refit; run the search first")
    return best


def run_plan(sources: list[FrozenTrial], settings: RefitSettings) -> list[tuple[FrozenTrial, int, int]]:
    """(source trial, seed, fold) of every refit run, best source first."""
    folds = range(settings.folds) if settings.folds else [NO_FOLD]
    return [(source, seed, fold) for source in sources for seed in range(settings.seeds) for fold in folds]


def run_values(source: FrozenTrial, seed: int, settings: RefitSettings) -> dict:
    """The TrainConfig values a refit run trains: the source trial's config at the refit size, length and seed."""
    config = TrialRecord.of(source).config
    if not config:
        raise StudyError(f"trial {source.number} stored no config (made by an older version?); it cannot be refit")
    return {**config, "image_size": settings.image_size, "epochs": settings.epochs, "seed": seed}


def run_key(trial: FrozenTrial) -> tuple[int | None, int | None, int]:
    record = TrialRecord.of(trial)
    return record.refit_source, record.refit_seed, refit_fold(trial)


def enqueue_runs(session: Session, plan: list[tuple[FrozenTrial, int, int]], settings: RefitSettings) -> int:
    """Enqueues each planned run that has no finished, running or waiting trial yet; returns how many."""
    planned = [PlannedTrial((source.number, seed, fold), dict(source.params),
                            refit_attributes(source, seed, fold, run_values(source, seed, settings)))
               for source, seed, fold in plan]
    return len(enqueue_missing(session.study, session.storage, planned, key_of=run_key))


def refit_split(session: Session, source: Session, folds: int) -> Split:
    """The refit study's split: the source study's (same test images), with `folds` folds of the rest; written
    to the refit study's `split.json` once and read from there afterwards."""
    manifest = session.folder / "split.json"
    if (manifest.is_file() and len(Split.load(manifest).folds) != folds
            and not session.study.get_trials(deepcopy=False)):
        manifest.unlink()  # other folds of a refused or abandoned command that trained nothing: dealt again below
    if manifest.is_file():
        split = Split.load(manifest)
        if len(split.folds) != folds:
            raise CommandLineError(f"{manifest}: the refit study has {len(split.folds) or 'no'} folds, not {folds}; "
                                   f"use another --storage/--run-dir for another number of folds")
        return split
    origin = source.folder / "split.json"
    split = Split.load(origin) if origin.is_file() else load_data(source).split  # another machine: the same
    # data and seed give the search's split again (as every search.run worker computes it)
    if folds:  # whole groups (videos) per fold where the data sets have groups files
        split = split.with_folds(folds, seed=session.spec.run.seed, groups=split_groups(session.spec.run.sources(), split))
    session.folder.mkdir(parents=True, exist_ok=True)
    split.save(manifest)
    return split


class FoldData:
    """The data of each cross-validation fold, decoded once (from the decoded-image cache) when first asked for."""

    def __init__(self, session: Session, split: Split, data: PolypData):
        self.session, self.split, self.data, self.folds = session, split, data, {}

    def __call__(self, trial: optuna.trial.Trial) -> PolypData:
        fold = refit_fold(trial)
        if fold == NO_FOLD:
            return self.data
        if fold not in self.folds:
            run = self.session.spec.run
            self.folds[fold] = prepare_data(run.sources(), self.session.spec.base.image_size, run.seed,
                                            split=self.split.fold(fold), synthetic_count=run.synthetic_count,
                                            external=run.external(), val_limit=run.val_limit, objective=run.objective)
        return self.folds[fold]


def open_refit(request: StudyRequest, given: dict[str, int]) -> tuple[Session, Session]:
    """(the search's session, the refit study's session), the refit study created or resumed with its settings.

    Args:
        request: the command line's study request; its image size and epochs are the refit's, not the search's.
        given: the refit settings the command line gives (top, seeds, folds, image_size, epochs).
    """
    source = open_session(dataclasses.replace(request, settings=request.settings.without("epochs", "image_size")),
                          create=False)
    merged = RefitSettings(**{**source.spec.refit.__dict__, **given})
    problem = next(((key, "must be at least 1") for key in ("image_size", "epochs") if given.get(key) == 0),
                   None) or refit_problem(merged)  # 0 (derive from the study) is for the [refit] table only
    if problem:
        key, why = problem
        raise CommandLineError(f"--{key.replace('_', '-')} {getattr(merged, key)}: {why}")
    settings = merged.resolved(source.spec.base)
    forced = request.settings.with_training(image_size=settings.image_size, epochs=settings.epochs)
    spec = with_command_line(refit_study(source.spec, settings), forced)
    if spec.run.multi_objective:  # --objectives copied from the search's command line
        print("note: search.refit ranks its runs by the validation score alone (each run is still timed, for "
              "search.export --max-latency-ms); --objectives is not used", file=sys.stderr, flush=True)
        spec = dataclasses.replace(spec, run=dataclasses.replace(spec.run, objectives=("mdice",)))
    check_imagenet_available(spec)  # before any run, as search.run does
    study = optuna.create_study(study_name=spec.name, storage=source.storage, direction="maximize",
                                load_if_exists=True, pruner=build_pruner("none", spec))
    wanted = {**settings.__dict__, "source_study": source.spec.name}
    stored = refit_settings(study)
    fixed = ("image_size", "epochs", "folds")
    if stored is not None and study.get_trials(deepcopy=False) and (
            {k: stored.get(k) for k in fixed} != {k: wanted[k] for k in fixed}):
        raise CommandLineError(
            f"study {spec.name} already holds refit runs at {stored.get('image_size')} px, {stored.get('epochs')} "
            f"epochs, {stored.get('folds') or 'no'} folds; give the same --image-size/--epochs/--folds to go on, or "
            f"another --storage/--run-dir for other settings")
    session = Session(spec, source.run_dir, source.storage_url, source.storage, study, source.artifacts)
    return source, session


def record_refit(session: Session, source: Session) -> None:
    """Stores the refit's settings and data on its study: once its plan and split stand, so that a refused
    command leaves nothing behind (a larger --top or --seeds later extends the same runs)."""
    record_run_data(session.study, session.spec.run)
    record_run_dir(session.study, session.run_dir)
    wanted = {**session.spec.refit.__dict__, "source_study": source.spec.name}
    if refit_settings(session.study) != wanted:
        record_refit_settings(session.study, wanted)


def print_run(study: optuna.Study, trial: FrozenTrial) -> None:
    """Optuna callback: the run's line, prefixed with its source trial, seed and fold."""
    source, seed, fold = run_key(trial)
    where = f", fold {fold}" if fold != NO_FOLD else ""
    print(f"refit of trial {source} (seed {seed}{where}): {trial_line(study, trial)}", flush=True)
