"""Command-line options shared by the search commands, and how they report bad input.

A command catches `USER_ERRORS` (the project's own error classes) and prints them as one line with exit
status 2 (`fail`); anything else is a bug and shows its traceback.
"""

from __future__ import annotations

import argparse
import sys

from polyp.errors import PolypError
from search.studies import PRUNERS, SAMPLERS

DEFAULT_RUN_DIR = "runs"
USER_ERRORS = (PolypError,)  # what the commands print as "error: ..." (exit 2); anything else is a bug: a traceback


class CommandLineError(PolypError):
    """A flag whose value cannot be used (a module that does not import, a folder that cannot be written)."""


def add_study_options(parser: argparse.ArgumentParser, run_dir_flag: str = "--out") -> None:
    """--study, --storage, --out (or --run-dir): which study, where it is stored, where its files go."""
    parser.add_argument("--study", required=True, help="study name (studies/NAME.toml) or path to a .toml file")
    parser.add_argument("--storage", help="SQLAlchemy URL, e.g. postgresql://user@host/db (default: SQLite in --out)")
    add_artifacts_option(parser)
    if run_dir_flag == "--out":
        parser.add_argument("--out", "--run-dir", dest="run_dir", default=DEFAULT_RUN_DIR,
                            help=f"run folder (default: {DEFAULT_RUN_DIR}/)")
    else:
        parser.add_argument("--run-dir", dest="run_dir", default=DEFAULT_RUN_DIR,
                            help=f"run folder (default: {DEFAULT_RUN_DIR}/)")


def add_artifacts_option(parser: argparse.ArgumentParser) -> None:
    """--artifacts: where trials' files are kept as Optuna artifacts (see search.artifacts)."""
    parser.add_argument("--artifacts", help="artifact store: a folder or s3://bucket/prefix (default: <run folder>/"
                        "artifacts; S3 uses AWS_ENDPOINT_URL and the usual AWS credentials)")


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
    """--epochs, --image-size, --device, --threads, --loader-workers, --encoder-weights: settings forced on every
    trial (search.forced)."""
    parser.add_argument("--epochs", type=int, help="epochs per trial (default: the study's)")
    parser.add_argument("--image-size", type=int, help="input size in pixels (default: the study's)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="default: auto")
    parser.add_argument("--threads", type=int, help="torch threads per trial, 0 = every core (default: the study's)")
    parser.add_argument("--loader-workers", type=int, help="processes preparing each trial's batches, -1 = auto "
                        "(default: the study's)")
    parser.add_argument("--encoder-weights", help="none | imagenet | a weights file, for every trial (default: the "
                        "study's)")


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


def fail(message: str, code: int = 2) -> int:
    """Prints an error for the user and returns the exit code."""
    print(f"error: {message}", file=sys.stderr)
    return code
