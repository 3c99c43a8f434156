"""The search: `python -m search.run --study unetpp --n-trials 40`.

Runs until the study holds N finished trials (complete or pruned, counted over every worker on the same
storage), so the same command resumes an interrupted study and several workers share one.

Example:
    python -m search.run --study demo --n-trials 6 --data synthetic
    python -m search.run --study unetpp --n-trials 40 --storage postgresql://postgres@db-host/optuna
"""

from __future__ import annotations

import argparse
import os
import sys

import optuna
from optuna.trial import TrialState

from search.notes import write_note
from search.objective import Objective
from search.options import USER_ERRORS, add_study_options, add_training_options, fail, import_trainer
from search.record import TrialRecord
from search.session import Session, load_data, open_session
from search.storage import command_url, password_hint, safe_url
from search.trial_loop import interrupt_on_signals, print_trial, run_until
from search.workers import add_worker_options, plan_workers, run_workers


def summary_table(session: Session, top: int = 5) -> str:
    """The best finished trials with their test metrics and output folders."""
    trials = [t for t in session.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    trials.sort(key=lambda t: t.value, reverse=True)
    states = {s: 0 for s in TrialState}
    for t in session.study.get_trials(deepcopy=False):
        states[t.state] += 1
    lines = [f"study {session.spec.name}: {states[TrialState.COMPLETE]} complete, {states[TrialState.PRUNED]} pruned, "
             f"{states[TrialState.FAIL]} failed  (storage {safe_url(session.storage_url)})",
             f"{'trial':>5}  {'val mDice':>9}  {'test mDice':>10}  {'test mIoU':>9}  config / outputs"]
    for record in map(TrialRecord.of, trials[:top]):
        lines.append(f"{record.number:>5}  {record.value:>9.4f}  {record.test.get('mdice', float('nan')):>10.4f}  "
                     f"{record.test.get('miou', float('nan')):>9.4f}  {record.describe()}\n{'':>40}{record.output_dir}")
    return "\n".join(lines)


def next_steps(session: Session) -> str:
    """What to open next; a password in the storage URL is left out of the commands (and said how to give)."""
    study = f"--study {session.spec.name} --run-dir {session.run_dir}"
    url = session.storage_url
    storage = f" --storage '{command_url(url)}'" if url.split(":")[0] != "sqlite" else ""
    hint = password_hint(url)
    return "\n".join([
        "next:" + (f" ({hint})" if hint else ""),
        f"  report:    python -m search.analyze {study}{storage}",
        f"  dashboard: python -m search.dashboard {study}{storage}",
        f"  export:    python -m search.export {study}{storage} --out {session.run_dir}/{session.spec.name}/best-model",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run an Optuna search over polyp segmentation models.")
    add_study_options(parser)
    parser.add_argument("--n-trials", type=int, required=True, help="finished trials the study must hold")
    add_training_options(parser)
    add_worker_options(parser)
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    interrupt_on_signals()
    try:
        trainer = import_trainer(args.trainer)
        session = open_session(args)
        data = load_data(session)  # decoded and split once, before any worker starts (they read the cache)
        plan = plan_workers(args, sys.argv[1:] if argv is None else argv, session.spec.base) if args.workers != 1 else None
    except USER_ERRORS as error:
        return fail(str(error))
    if plan is not None:
        return run_workers("search.run", plan)
    spec = session.spec
    print(f"study {spec.name}: target {args.n_trials} finished trials, sampler {spec.run.sampler}, pruner {spec.run.pruner}, "
          f"{spec.base.epochs} epochs at {spec.base.image_size} px, {data.describe(spec.base.image_size)}, "
          f"worker pid {os.getpid()}", flush=True)
    for note in data.notes():
        print(note, flush=True)
    objective = Objective(spec, data, session.run_dir, trainer=trainer, verbose=not args.quiet, after_trial=[write_note],
                          artifacts=session.artifacts)
    try:
        outcome = run_until(session.study, objective, args.n_trials, session.storage, timeout=args.timeout,
                            callbacks=[print_trial],
                            sampler_for=session.sampler_for)
    except KeyboardInterrupt:
        print("\ninterrupted: the running trial is marked FAIL; run the same command again to resume.", file=sys.stderr)
        return 130
    if outcome == "timeout":
        print(f"--timeout {args.timeout:.0f} s reached: no new trial started.")
    print(summary_table(session))
    print(next_steps(session))
    return 0


if __name__ == "__main__":
    sys.exit(main())
