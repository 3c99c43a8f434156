"""A command's study session: the study as the command line runs it, its run folder, storage and data."""

from __future__ import annotations

import argparse
import dataclasses
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import optuna

from polyp.data import PolypData, Split, prepare_data
from search.artifacts import open_artifact_store
from search.forced import with_command_line
from search.imagenet import check_imagenet_available
from search.options import CommandLineError
from search.outputs import study_dir
from search.record import record_run_data, refit_settings, run_data
from search.samplers import build_pruner, seeded_sampler
from search.storage import default_storage_url, open_storage, safe_url
from search.studies import REFIT_SUFFIX, RefitSettings, StudyError, StudySpec, load_study, refit_study

warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeat, TPE group: stable in use


@dataclass
class Session:
    """An opened study: its definition, run folder, storage URL and the Optuna study."""

    spec: StudySpec
    run_dir: Path
    storage_url: str
    storage: optuna.storages.RDBStorage
    study: optuna.Study
    artifacts: object  # the Optuna artifact store of the trials' files (search.artifacts)

    @property
    def folder(self) -> Path:
        """`<run folder>/<study>`."""
        return study_dir(self.run_dir, self.spec.name)

    def sampler_for(self, trial_number: int) -> optuna.samplers.BaseSampler:
        """The sampler for the trial about to get `trial_number` (for `run_until`)."""
        return seeded_sampler(self.spec, trial_number)


def writable_run_dir(path: str) -> Path:
    """Creates the run folder and checks that it can be written; a CommandLineError naming it otherwise."""
    run_dir = Path(path)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-test-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as error:
        raise CommandLineError(f"run folder {run_dir} is not writable: {error.strerror or error}") from None
    return run_dir


def open_session(args: argparse.Namespace, create: bool = True) -> Session:
    """Loads the study definition, opens the storage and creates or loads the Optuna study."""
    spec = with_command_line(load_study(args.study), args)
    if create:  # before anything is written: build_pruner refuses a pair the sampler cannot search under
        pruner = build_pruner(spec.run.pruner, spec)
        check_imagenet_available(spec)  # commands that train: stop before any trial, not in every trial
    run_dir = writable_run_dir(args.run_dir)
    artifacts = open_artifact_store(run_dir, getattr(args, "artifacts", None))  # checked before the study is touched
    url = args.storage or default_storage_url(run_dir)
    storage = open_storage(url, getattr(args, "heartbeat", 15))
    if create:
        study = optuna.create_study(study_name=spec.name, storage=storage, direction="maximize", load_if_exists=True,
                                    pruner=pruner)  # the sampler: Session.sampler_for, one per trial
        record_run_data(study, spec.run.data, spec.run.test_list)
    else:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        if spec.name not in names:
            raise StudyError(f"no study {spec.name!r} in {safe_url(url)}; studies there: {', '.join(names) or 'none'}")
        study = optuna.load_study(study_name=spec.name, storage=storage)
        spec = with_stored_data(with_stored_refit(spec, study, args), study, args)
    return Session(spec, run_dir, url, storage, study, artifacts)


def with_stored_data(spec: StudySpec, study: optuna.Study, args: argparse.Namespace) -> StudySpec:
    """The study with the data and test list its search trained on, where the command line names none (analyze
    and export then score the same images the trials saw)."""
    stored = run_data(study)
    if stored is None or getattr(args, "data", None) or getattr(args, "test_list", None):
        return spec
    return dataclasses.replace(spec, run=dataclasses.replace(spec.run, data=stored["data"],
                                                             test_list=stored.get("test_list", "")))


def with_stored_refit(spec: StudySpec, study: optuna.Study, args: argparse.Namespace) -> StudySpec:
    """A refit study as `search.refit` made it (its image size, epochs, seeds and folds, kept on the study),
    whatever the source study's `[refit]` table says now; any other study unchanged."""
    stored = refit_settings(study)
    if stored is None or not spec.name.endswith(REFIT_SUFFIX):
        return spec
    settings = RefitSettings(**{key: stored[key] for key in RefitSettings.__dataclass_fields__ if key in stored})
    source = load_study(args.study[: -len(REFIT_SUFFIX)])
    return with_command_line(refit_study(source, settings), args)


def load_data(session: Session) -> PolypData:
    """Decodes the study's data once; the split is read from (or written to) `<study>/split.json`."""
    run = session.spec.run
    manifest = session.folder / "split.json"
    split = Split.load(manifest) if manifest.exists() else None
    data = prepare_data(run.data, session.spec.base.image_size, run.seed, run.val_fraction, run.test_fraction,
                        run.test_list or None, split=split, synthetic_count=run.synthetic_count)
    if split is None:
        data.split.save(manifest)
    return data
