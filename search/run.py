"""The search: `python -m search.run --study unetpp --n-trials 40`.

Runs until the study holds N finished trials (complete or pruned, counted over every worker on the same
storage), so the same command resumes an interrupted study and several workers share one. Offline, a study
that asks for ImageNet encoders searches those with local weights and says which it left out.

Example:
    python -m search.run --study demo --n-trials 6 --data synthetic
    python -m search.run --study unetpp --n-trials 40 --storage postgresql://postgres@db-host/optuna
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

from polyp.data import PolypData
from search.cli import (
    add_study_options,
    add_training_options,
    add_worker_options,
    run_trial_command,
    study_request,
)
from search.engine.notes import write_note
from search.engine.objective import Objective
from search.engine.session import Session, check_stored_choices, load_data, open_session
from search.engine.trial_loop import print_trial, run_until
from search.results.summary import next_steps, summary_table
from search.study.imagenet import with_local_encoders


@dataclass
class Search:
    """search.run's job: sample trials until the study holds `n_trials` finished ones."""

    session: Session
    data: PolypData
    n_trials: int
    unit: str = "trial"

    def start(self, trainer: Callable, verbose: bool, timeout: float | None) -> str:
        spec = self.session.spec
        pruner = "none (two objectives)" if spec.run.multi_objective else spec.run.pruner
        print(f"study {spec.name}: target {self.n_trials} finished trials, sampler {spec.run.sampler}, pruner "
              f"{pruner}, {spec.base.epochs} epochs at {spec.base.image_size} px, "
              f"{self.data.describe(spec.base.image_size)}, worker pid {os.getpid()}", flush=True)
        for note in self.data.notes():
            print(note, flush=True)
        objective = Objective(spec, self.data, self.session.run_dir, trainer=trainer, verbose=verbose,
                              after_trial=[write_note], artifacts=self.session.artifacts)
        return run_until(self.session.study, objective, self.n_trials, self.session.storage, timeout=timeout,
                         callbacks=[print_trial], sampler_for=self.session.sampler_for)

    def interrupted(self) -> str:
        return "interrupted: the running trial is marked FAIL; run the same command again to resume."

    def after_workers(self, code: int) -> int:
        return code

    def finish(self, outcome: str) -> int:
        print(summary_table(self.session))
        print(next_steps(self.session))
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run an Optuna search over polyp segmentation models.")
    add_study_options(parser)
    parser.add_argument("--n-trials", type=int, required=True, help="finished trials the study must hold")
    add_training_options(parser)
    add_worker_options(parser)
    args = parser.parse_args(argv)

    def prepare() -> Search:
        request = study_request(args, "search.run")
        spec, note = with_local_encoders(request.spec())
        if note:
            print(note, flush=True)
        session = open_session(request, spec=spec)
        check_stored_choices(session, "encoder")
        return Search(session, load_data(session), args.n_trials)  # decoded once, before any worker starts

    return run_trial_command("search.run", args, argv, prepare)


if __name__ == "__main__":
    sys.exit(main())
