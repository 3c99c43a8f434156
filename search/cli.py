"""The search commands' shared command line: flags, the typed request read from them once, error reporting,
and the one skeleton of the commands that run trials (`search.run`, `search.replay`, `search.refit`).

A command catches `USER_ERRORS` (the project's own error classes) and prints them as one line with exit
status 2 (`fail`); anything else is a bug and shows its traceback. Flags mean one thing on every command:
`--run-dir` is the run folder (trial folders, the default SQLite storage, artifacts); `--out` is the new
folder a command writes its product into (search.export's export). On the commands that take a run folder
only, `--out` is still accepted as the old spelling of `--run-dir`, with a note.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import optuna

from polyp.errors import PolypError
from search.engine.session import DEFAULT_RUN_DIR, Session, StudyRequest
from search.engine.trial_loop import interrupt_on_signals
from search.engine.workers import BAD_INPUT, plan_workers, run_workers
from search.study.definition import DIRECTIONS, PRUNERS, SAMPLERS
from search.study.errors import CommandLineError
from search.study.forced import FORCED_FIELDS, RUN_FLAGS, CommandSettings

USER_ERRORS = (PolypError,)  # what the commands print as "error: ..." (exit 2); anything else is a bug: a traceback
__all__ = ["DEFAULT_RUN_DIR", "USER_ERRORS", "CommandLineError", "TrialJob", "fail", "import_trainer",
           "run_trial_command", "study_request"]


def add_study_options(parser: argparse.ArgumentParser, old_out: bool = True, reads: bool = False) -> None:
    """--study, --storage, --artifacts, --run-dir: which study, where it is stored, where its trials' files are.

    Args:
        old_out: also accept `--out` as the old spelling of `--run-dir` (commands whose `--out` is not a
            product folder of their own).
        reads: the command reads a study its trials ran before (its run folder defaults to theirs).
    """
    parser.add_argument("--study", required=True, help="study name (studies/NAME.toml) or path to a .toml file")
    parser.add_argument("--storage", help="SQLAlchemy URL, e.g. postgresql://user@host/db (default: SQLite in the "
                        "run folder)")
    add_artifacts_option(parser)
    add_run_dir_option(parser, old_out, reads)


def add_run_dir_option(parser: argparse.ArgumentParser, old_out: bool = True, reads: bool = True) -> None:
    """--run-dir (and, where `old_out`, its old spelling --out)."""
    default = f"the one the study's trials ran in, else {DEFAULT_RUN_DIR}/" if reads else f"{DEFAULT_RUN_DIR}/"
    parser.add_argument("--run-dir", dest="run_dir", help=f"run folder: trial folders, optuna.db, artifacts/ "
                        f"(default: {default})")
    if old_out:
        parser.add_argument("--out", dest="old_out", help=argparse.SUPPRESS)


def add_artifacts_option(parser: argparse.ArgumentParser) -> None:
    """--artifacts: where trials' files are kept as Optuna artifacts (see search.engine.artifacts)."""
    parser.add_argument("--artifacts", help="artifact store: a folder or s3://bucket/prefix (default: <run folder>/"
                        "artifacts; S3 uses AWS_ENDPOINT_URL and the usual AWS credentials)")


def add_data_options(parser: argparse.ArgumentParser) -> None:
    """--data, --test-list, --groups, --val-data, --val-limit, --objective: the images a search trains,
    validates and tests on, and the score it ranks trials by."""
    parser.add_argument("--data", action="append", metavar="[NAME=]FOLDER",
                        help="a training set: folder with images/ and masks/, or 'synthetic'; repeat for several "
                        "(NAME=FOLDER; default: the study's)")
    parser.add_argument("--test-list", action="append", metavar="[NAME=]FILE",
                        help="file of a set's test image stems (e.g. the PraNet Kvasir list); NAME= with several sets")
    parser.add_argument("--groups", action="append", metavar="NAME=CSV",
                        help="a set's groups file (stem,group, e.g. CVC-ClinicDB's sequences.csv): a group stays on "
                        "one side of the split")
    parser.add_argument("--val-data", action="append", metavar="[NAME=]FOLDER",
                        help="a validation set never trained on (another centre), scored every epoch; repeatable")
    parser.add_argument("--val-limit", type=int, metavar="N",
                        help="score at most N images of each --val-data set (default: the study's; 0 = all)")
    parser.add_argument("--objective",
                        help="what ranks and prunes trials: mean (in-domain validation and every --val-data set), "
                        "worst, or a set's name (default: the study's, else mean)")


def add_method_options(parser: argparse.ArgumentParser) -> None:
    """--sampler, --pruner and --seed: how a search chooses and stops trials."""
    parser.add_argument("--sampler", choices=SAMPLERS, help="default: the study's")
    parser.add_argument("--pruner", choices=PRUNERS, help="default: the study's")
    parser.add_argument("--objectives", nargs="+", choices=tuple(DIRECTIONS), metavar="OBJECTIVE",
                        help="mdice (default), or mdice latency_ms: search validation mDice and ms per frame together "
                        "(a Pareto front; trials are not pruned by epoch)")
    parser.add_argument("--seed", type=int, help="sampler and split seed (default: the study's)")


def add_forced_options(parser: argparse.ArgumentParser) -> None:
    """--epochs, --image-size, --device, --threads, --loader-workers, --encoder-weights: settings forced on every
    trial (search.study.forced)."""
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


def add_worker_options(parser: argparse.ArgumentParser) -> None:
    """--workers and --devices (search.engine.workers)."""
    parser.add_argument("--workers", type=int, default=1,
                        help="worker processes to start on this machine, sharing the study (default 1: this process)")
    parser.add_argument("--devices", help="with --workers on CUDA: comma-separated devices, e.g. cuda:0,cuda:1 "
                        "(default: every visible GPU; round-robin when --workers exceeds them)")


def command_settings(args: argparse.Namespace) -> CommandSettings:
    """The [run] and training settings the command line gives (only those given)."""
    given = {name: value for name, value in vars(args).items() if value is not None}
    return CommandSettings(run={name: given[name] for name in RUN_FLAGS if name in given},
                           training={name: given[name] for name in FORCED_FIELDS if name in given})


def study_request(args: argparse.Namespace, command: str) -> StudyRequest:
    """What the command line asks of the study, read once; the old `--out` spelling of `--run-dir` with a note."""
    run_dir = args.run_dir
    old = getattr(args, "old_out", None)
    if old is not None:
        if run_dir is not None and Path(run_dir).resolve() != Path(old).resolve():
            raise CommandLineError(f"--out {old} and --run-dir {run_dir}: on {command} both name the run folder "
                                   f"(--out is its old spelling); give --run-dir only")
        print(f"note: on {command}, --out is the old spelling of --run-dir (the run folder); use --run-dir {old}",
              file=sys.stderr, flush=True)
        run_dir = old
    return StudyRequest(study=args.study, storage=args.storage, run_dir=run_dir,
                        artifacts=getattr(args, "artifacts", None), heartbeat=getattr(args, "heartbeat", 15),
                        settings=command_settings(args))


def import_trainer(spec: str):
    """The callable named "module:name" (the training function the objective calls)."""
    module_name, _, name = spec.partition(":")
    try:
        return getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as error:
        raise CommandLineError(f"--trainer {spec!r}: cannot import ({error}); write module:function") from None


def fail(message: str, code: int = BAD_INPUT) -> int:
    """Prints an error for the user and returns the exit code."""
    print(f"error: {message}", file=sys.stderr)
    return code


def _new_spelling(argv: list[str]) -> list[str]:
    """The command line with the old `--out` of the run folder written `--run-dir` (for the workers, which then
    print no note of their own)."""
    return ["--run-dir" if word == "--out" else "--run-dir=" + word[6:] if word.startswith("--out=") else word
            for word in argv]


class TrialJob(Protocol):
    """What one trial-running command does, for `run_trial_command`."""

    session: Session
    unit: str  # what one trial is to the user: "trial", "row", "run"

    def start(self, trainer: Callable, verbose: bool, timeout: float | None) -> str:
        """Runs trials in this process until the command's target; returns `run_until`'s outcome."""

    def interrupted(self) -> str:
        """Saves what must survive a Ctrl-C and says how to go on."""

    def after_workers(self, code: int) -> int:
        """What the command prints once its `--workers` ended; returns the exit status."""

    def finish(self, outcome: str) -> int:
        """What the command prints at the end; returns the exit status."""


def run_trial_command(module: str, args: argparse.Namespace, argv: list[str] | None,
                      prepare: Callable[[], TrialJob]) -> int:
    """The skeleton of the commands that run trials: open the session (`prepare`), start `--workers` copies of the
    command or run trials here; Ctrl-C or SIGTERM -> the running trial marked FAIL, exit 130; `--timeout`.

    Args:
        module: the command (`python -m module`), for its workers.
        args: the parsed command line (with add_training_options and add_worker_options).
        argv: the command line (None: sys.argv), given to each worker without --workers.
        prepare: opens everything the job needs, before any worker starts; raises USER_ERRORS.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    interrupt_on_signals()
    try:
        trainer = import_trainer(args.trainer)
        job = prepare()
        plan = None
        if args.workers != 1:
            plan = plan_workers(args.workers, args.devices, args.device,
                                _new_spelling(sys.argv[1:] if argv is None else argv), job.session.spec.base)
    except USER_ERRORS as error:
        return fail(str(error))
    if plan is not None:
        return job.after_workers(run_workers(module, plan))
    try:
        outcome = job.start(trainer, not args.quiet, args.timeout)
    except KeyboardInterrupt:
        print(f"\n{job.interrupted()}", file=sys.stderr)
        return 130
    if outcome == "timeout":
        print(f"--timeout {args.timeout:.0f} s reached: no new {job.unit} started; run the same command again to go on.")
    return job.finish(outcome)
