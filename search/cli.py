"""Options and set-up shared by the search commands (run, replay, analyze, export, dashboard)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import optuna

from polyp.data import PolypData, Split, prepare_data
from polyp.errors import PolypError
from search.forced import with_command_line
from search.outputs import study_dir
from search.samplers import build_pruner, seeded_sampler
from search.storage import default_storage_url, open_storage, safe_url
from search.studies import PRUNERS, SAMPLERS, StudyError, StudySpec, load_study

DEFAULT_RUN_DIR = "runs"
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeat, TPE group: stable in use
USER_ERRORS = (PolypError,)  # what the commands print as "error: ..." (exit 2); anything else is a bug: a traceback


class CommandLineError(PolypError):
    """A flag whose value cannot be used (a module that does not import, a folder that cannot be written)."""


def add_study_options(parser: argparse.ArgumentParser, run_dir_flag: str = "--out") -> None:
    """--study, --storage, --out (or --run-dir): which study, where it is stored, where its files go."""
    parser.add_argument("--study", required=True, help="study name (studies/NAME.toml) or path to a .toml file")
    parser.add_argument("--storage", help="SQLAlchemy URL, e.g. postgresql://user@host/db (default: SQLite in --out)")
    if run_dir_flag == "--out":
        parser.add_argument("--out", "--run-dir", dest="run_dir", default=DEFAULT_RUN_DIR,
                            help=f"run folder (default: {DEFAULT_RUN_DIR}/)")
    else:
        parser.add_argument("--run-dir", dest="run_dir", default=DEFAULT_RUN_DIR,
                            help=f"run folder (default: {DEFAULT_RUN_DIR}/)")


def add_data_options(parser: argparse.ArgumentParser) -> None:
    """--data and --test-list: the images a search trains, validates and tests on."""
    parser.add_argument("--data", help="folder with images/ and masks/, or 'synthetic' (default: the study's)")
    parser.add_argument("--test-list", help="file of test image stems (e.g. the PraNet Kvasir list)")


def add_method_options(parser: argparse.ArgumentParser) -> None:
    """--sampler, --pruner and --seed: how a search chooses and stops trials."""
    parser.add_argument("--sampler", choices=SAMPLERS, help="default: the study's")
    parser.add_argument("--pruner", choices=PRUNERS, help="default: the study's")
    parser.add_argument("--seed", type=int, help="sampler and split seed (default: the study's)")


def add_forced_options(parser: argparse.ArgumentParser) -> None:
    """--epochs, --image-size and --device: training settings forced on every trial (see search.forced)."""
    parser.add_argument("--epochs", type=int, help="epochs per trial (default: the study's)")
    parser.add_argument("--image-size", type=int, help="input size in pixels (default: the study's)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="default: auto")


def add_trainer_option(parser: argparse.ArgumentParser) -> None:
    """--trainer: the training function (tests pass a fake one)."""
    parser.add_argument("--trainer", default="polyp.train:fit",
                        help="training function as module:name (default polyp.train:fit; tests use a fake one)")


def add_training_options(parser: argparse.ArgumentParser) -> None:
    """Everything a search worker takes: data, method, forced settings, timeout, heartbeat, output, trainer."""
    add_data_options(parser)
    add_method_options(parser)
    add_forced_options(parser)
    parser.add_argument("--timeout", type=float, help="start no new trial after this many seconds")
    parser.add_argument("--heartbeat", type=int, default=15,
                        help="seconds between a running trial's heartbeats; silent for 2x this = dead worker (default 15)")
    parser.add_argument("--quiet", action="store_true", help="no line per epoch")
    add_trainer_option(parser)


def import_trainer(spec: str):
    """The callable named "module:name" (the training function the objective calls)."""
    import importlib

    module_name, _, name = spec.partition(":")
    try:
        return getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as error:
        raise CommandLineError(f"--trainer {spec!r}: cannot import ({error}); write module:function") from None


def interrupt_on_signals() -> None:
    """Makes SIGINT and SIGTERM raise KeyboardInterrupt, so `kill` and a Ctrl-C reach a background worker too
    (a shell starts background jobs with SIGINT ignored) and the running trial is marked before exiting."""

    def interrupt(signum, _frame):
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread only
        signal.signal(signal.SIGINT, interrupt)
        signal.signal(signal.SIGTERM, interrupt)


def fail(message: str, code: int = 2) -> int:
    """Prints an error for the user and returns the exit code."""
    print(f"error: {message}", file=sys.stderr)
    return code


@dataclass
class Session:
    """An opened study: its definition, run folder, storage URL and the Optuna study."""

    spec: StudySpec
    run_dir: Path
    storage_url: str
    storage: optuna.storages.RDBStorage
    study: optuna.Study

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
    run_dir = writable_run_dir(args.run_dir)
    url = args.storage or default_storage_url(run_dir)
    storage = open_storage(url, getattr(args, "heartbeat", 15))
    if create:
        study = optuna.create_study(study_name=spec.name, storage=storage, direction="maximize", load_if_exists=True,
                                    pruner=pruner)  # the sampler: Session.sampler_for, one per trial
    else:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        if spec.name not in names:
            raise StudyError(f"no study {spec.name!r} in {safe_url(url)}; studies there: {', '.join(names) or 'none'}")
        study = optuna.load_study(study_name=spec.name, storage=storage)
    return Session(spec, run_dir, url, storage, study)


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
