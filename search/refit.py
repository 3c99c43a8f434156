"""Train a search's best configurations again at full size: `python -m search.refit --study NAME --top 3`.

A search is affordable only at a reduced size (small images, few epochs, one seed), so its best trial is a
small, briefly trained model, and the ranking of close configurations is within seed-to-seed noise. This
command takes the `--top K` complete trials of study NAME (by validation mDice) and trains each configuration
again at `--image-size`/`--epochs` (default: the study's `[refit]` table, else twice the size and three times
the epochs) with `--seeds N` seeds, validating on the study's split or, with `--folds F`, on each fold of an
F-fold cross-validation of the non-test images (the folds are kept in the refit study's `split.json`; the
test split never changes).

The runs are trials of the companion study NAME.refit in the same storage, enqueued with their source trial,
seed and fold as user attributes, so the command resumes after a crash (running it again runs what is left),
`--workers N` and several machines on one PostgreSQL storage share the runs, optuna-dashboard shows them and
`search.analyze --study NAME.refit` reports them. It ends with a table per configuration (search value, refit
validation and test mDice as mean ± standard deviation over the runs) and Spearman's rho between the search's
ranking and the refit's. The winner is the configuration with the best mean validation mDice, never chosen by
test; `search.export --study NAME.refit` exports it (`--ensemble`: all its runs as one model).

Example:
    python -m search.refit --study demo --top 3 --seeds 2 --image-size 96 --epochs 12
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import warnings

import optuna
from optuna.trial import FrozenTrial

from polyp.data import PolypData, Split, prepare_data
from search.forced import with_command_line
from search.imagenet import check_imagenet_available
from search.notes import write_note
from search.objective import Objective
from search.options import (
    USER_ERRORS,
    CommandLineError,
    add_study_options,
    add_training_options,
    fail,
    import_trainer,
)
from search.record import (
    TrialRecord,
    record_refit_settings,
    record_run_data,
    refit_attributes,
    refit_fold,
    refit_settings,
)
from search.refit_table import RefitRow, refit_rows, refit_table, winner
from search.run import next_steps
from search.samplers import build_pruner
from search.session import Session, load_data, open_session
from search.storage import StudyLock
from search.studies import RefitSettings, StudyError, refit_problem, refit_study
from search.trial_loop import TAKEN, interrupt_on_signals, run_until, top_trials, trial_line
from search.workers import add_worker_options, plan_workers, run_workers

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


def _key(trial: FrozenTrial) -> tuple[int | None, int | None, int]:
    record = TrialRecord.of(trial)
    return record.refit_source, record.refit_seed, refit_fold(trial)


def enqueue_runs(session: Session, plan: list[tuple[FrozenTrial, int, int]], settings: RefitSettings) -> int:
    """Enqueues each planned run that has no finished, running or waiting trial yet; returns how many.

    Runs under the study lock, so several workers starting together enqueue every run once.
    """
    study = session.study
    with StudyLock(session.storage, study.study_name):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            optuna.storages.fail_stale_trials(study)  # a dead worker's run gets its retry (WAITING) first
        taken = {_key(t) for t in study.get_trials(deepcopy=False, states=TAKEN)}
        added = 0
        for source, seed, fold in plan:
            if (source.number, seed, fold) in taken:
                continue
            study.enqueue_trial(dict(source.params),
                                user_attrs=refit_attributes(source, seed, fold, run_values(source, seed, settings)))
            added += 1
    return added


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
                                   f"use another --storage/--out for another number of folds")
        return split
    origin = source.folder / "split.json"
    split = Split.load(origin) if origin.is_file() else load_data(source).split  # another machine: the same
    # data and seed give the search's split again (as every search.run worker computes it)
    split = split.with_folds(folds, seed=session.spec.run.seed) if folds else split
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
            self.folds[fold] = prepare_data(run.data, self.session.spec.base.image_size, run.seed,
                                            split=self.split.fold(fold), synthetic_count=run.synthetic_count)
        return self.folds[fold]


def open_refit(args: argparse.Namespace) -> tuple[Session, Session]:
    """(the search's session, the refit study's session), the refit study created or resumed with its settings."""
    source_args = copy.copy(args)
    source_args.epochs = source_args.image_size = None  # they are the refit's, not the search's
    source = open_session(source_args, create=False)
    given = {key: getattr(args, key) for key in ("top", "seeds", "folds", "image_size", "epochs")
             if getattr(args, key) is not None}
    merged = RefitSettings(**{**source.spec.refit.__dict__, **given})
    problem = next(((key, "must be at least 1") for key in ("image_size", "epochs") if given.get(key) == 0),
                   None) or refit_problem(merged)  # 0 (derive from the study) is for the [refit] table only
    if problem:
        key, why = problem
        raise CommandLineError(f"--{key.replace('_', '-')} {getattr(merged, key)}: {why}")
    settings = merged.resolved(source.spec.base)
    args.image_size, args.epochs = settings.image_size, settings.epochs
    spec = with_command_line(refit_study(source.spec, settings), args)
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
            f"another --storage/--out for other settings")
    session = Session(spec, source.run_dir, source.storage_url, source.storage, study, source.artifacts)
    return source, session


def record_refit(session: Session, source: Session) -> None:
    """Stores the refit's settings and data on its study: once its plan and split stand, so that a refused
    command leaves nothing behind (a larger --top or --seeds later extends the same runs)."""
    record_run_data(session.study, session.spec.run.data, session.spec.run.test_list)
    wanted = {**session.spec.refit.__dict__, "source_study": source.spec.name}
    if refit_settings(session.study) != wanted:
        record_refit_settings(session.study, wanted)


def print_run(study: optuna.Study, trial: FrozenTrial) -> None:
    """Optuna callback: the run's line, prefixed with its source trial, seed and fold."""
    source, seed, fold = _key(trial)
    where = f", fold {fold}" if fold != NO_FOLD else ""
    print(f"refit of trial {source} (seed {seed}{where}): {trial_line(study, trial)}", flush=True)


def report(session: Session) -> list[RefitRow]:
    """Prints the per-configuration table, Spearman's rho, the winner and what to run next; returns the rows."""
    rows = refit_rows(session.study)
    print(f"study {session.spec.name}: {session.spec.description}")
    print(refit_table(rows))
    best = winner(rows)
    if best is not None:
        runs = f"{best.runs} run{'s' if best.runs != 1 else ''}"
        print(f"winner (best mean validation mDice, {runs}): trial {best.source}'s configuration; "
              f"search.export exports it" + (f", and with --ensemble its {runs} as one model" if best.runs > 1 else ""))
    print(next_steps(session))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train a study's best configurations again at full size, with "
                                                 "several seeds (or folds), as the trials of the study NAME.refit.")
    add_study_options(parser)
    parser.add_argument("--top", type=int, help="best complete trials to train again (default: the study's [refit] "
                        "top, else 3)")
    parser.add_argument("--seeds", type=int, help="runs per configuration (default: [refit] seeds, else 2)")
    parser.add_argument("--folds", type=int, help="F-fold cross-validation of the non-test images instead of the "
                        "study's validation split (default: [refit] folds, else 0 = the split)")
    add_training_options(parser)
    add_worker_options(parser)
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    interrupt_on_signals()
    try:
        trainer = import_trainer(args.trainer)
        source, session = open_refit(args)
        settings = session.spec.refit
        plan = run_plan(refit_sources(source.study, settings.top), settings)
        split = refit_split(session, source, settings.folds)
        data = load_data(session)
        record_refit(session, source)
        workers = plan_workers(args, sys.argv[1:] if argv is None else argv, session.spec.base) if args.workers != 1 else None
    except USER_ERRORS as error:
        return fail(str(error))
    if workers is not None:
        code = run_workers("search.refit", workers)
        report(session)
        return code
    added = enqueue_runs(session, plan, settings)
    print(f"study {session.spec.name}: {session.spec.description}; {len(plan)} runs ({added} enqueued now), "
          f"{data.describe(settings.image_size)}, worker pid {os.getpid()}", flush=True)
    objective = Objective(session.spec, data, session.run_dir, trainer=trainer, artifacts=session.artifacts,
                          verbose=not args.quiet, after_trial=[write_note], data_for=FoldData(session, split, data))
    planned = {(s.number, seed, fold) for s, seed, fold in plan}
    try:
        outcome = run_until(session.study, objective, len(plan), session.storage, timeout=args.timeout,
                            callbacks=[print_run], waiting_only=True, trial_filter=lambda t: _key(t) in planned,
                            sampler_for=session.sampler_for)
    except KeyboardInterrupt:
        print("\ninterrupted: the running refit run is marked FAIL; run the same command again to run the rest.",
              file=sys.stderr)
        return 130
    if outcome == "timeout":
        print(f"--timeout {args.timeout:.0f} s reached: no new run started; run the same command again to go on.")
    report(session)
    return 0


if __name__ == "__main__":
    sys.exit(main())
