"""Train a search's best configurations again at full size: `python -m search.refit --study NAME --top 3`.

A search is affordable only at a reduced size (small images, few epochs, one seed), so its best trial is a
small, briefly trained model, and the ranking of close configurations is within seed-to-seed noise. This
command takes the `--top K` complete trials of study NAME (by their value: validation mDice, or the objective over several sets) and trains each configuration
again at `--image-size`/`--epochs` (default: the study's `[refit]` table, else twice the size and three times
the epochs) with `--seeds N` seeds, validating on the study's split or, with `--folds F`, on each fold of an
F-fold cross-validation of the non-test images (the folds are kept in the refit study's `split.json`; the
test split never changes).

The runs are trials of the companion study NAME.refit in the same storage (`search.engine.refit_runs`), so the
command resumes after a crash (running it again runs what is left), `--workers N` and several machines on one
PostgreSQL storage share the runs, optuna-dashboard shows them and `search.analyze --study NAME.refit` reports
them. It ends with a table per configuration (search value, refit validation and test mDice as mean ± standard
deviation over the runs) and Spearman's rho between the search's ranking and the refit's. The winner is the
configuration with the best mean validation value (mDice, or the study's objective), never chosen by test; `search.export --study NAME.refit`
exports it (`--ensemble`: all its runs as one model).

Example:
    python -m search.refit --study demo --top 3 --seeds 2 --image-size 96 --epochs 12
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

from optuna.trial import FrozenTrial

from polyp.data import PolypData, Split
from search.cli import (
    add_study_options,
    add_training_options,
    add_worker_options,
    run_trial_command,
    study_request,
)
from search.engine.notes import write_note
from search.engine.objective import Objective
from search.engine.refit_runs import (
    FoldData,
    enqueue_runs,
    open_refit,
    print_run,
    record_refit,
    refit_sources,
    refit_split,
    run_key,
    run_plan,
)
from search.engine.session import Session, load_data
from search.engine.trial_loop import run_until
from search.results.refit_table import refit_rows, refit_table, winner_line
from search.results.summary import next_steps

REFIT_FLAGS = ("top", "seeds", "folds", "image_size", "epochs")


@dataclass
class Refit:
    """search.refit's job: every planned (source trial, seed, fold) run once."""

    session: Session
    data: PolypData
    split: Split
    plan: list[tuple[FrozenTrial, int, int]]
    unit: str = "run"

    def start(self, trainer: Callable, verbose: bool, timeout: float | None) -> str:
        session, settings = self.session, self.session.spec.refit
        added = enqueue_runs(session, self.plan, settings)
        print(f"study {session.spec.name}: {session.spec.description}; {len(self.plan)} runs ({added} enqueued now), "
              f"{self.data.describe(settings.image_size)}, worker pid {os.getpid()}", flush=True)
        objective = Objective(session.spec, self.data, session.run_dir, trainer=trainer, artifacts=session.artifacts,
                              verbose=verbose, after_trial=[write_note],
                              data_for=FoldData(session, self.split, self.data))
        planned = {(source.number, seed, fold) for source, seed, fold in self.plan}
        return run_until(session.study, objective, len(self.plan), session.storage, timeout=timeout,
                         callbacks=[print_run], waiting_only=True, trial_filter=lambda t: run_key(t) in planned,
                         sampler_for=session.sampler_for)

    def interrupted(self) -> str:
        return "interrupted: the running refit run is marked FAIL; run the same command again to run the rest."

    def after_workers(self, code: int) -> int:
        self.finish("done")
        return code

    def finish(self, outcome: str) -> int:
        rows = refit_rows(self.session.study)
        print(f"study {self.session.spec.name}: {self.session.spec.description}")
        print(refit_table(rows))
        if line := winner_line(rows):
            print(line)
        print(next_steps(self.session))
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train a study's best configurations again at full size, with "
                                                 "several seeds (or folds), as the trials of the study NAME.refit.")
    add_study_options(parser, reads=True)
    parser.add_argument("--top", type=int, help="best complete trials to train again (default: the study's [refit] "
                        "top, else 3)")
    parser.add_argument("--seeds", type=int, help="runs per configuration (default: [refit] seeds, else 2)")
    parser.add_argument("--folds", type=int, help="F-fold cross-validation of the non-test images instead of the "
                        "study's validation split (default: [refit] folds, else 0 = the split)")
    add_training_options(parser)
    add_worker_options(parser)
    args = parser.parse_args(argv)

    def prepare() -> Refit:
        given = {key: getattr(args, key) for key in REFIT_FLAGS if getattr(args, key) is not None}
        source, session = open_refit(study_request(args, "search.refit"), given)
        settings = session.spec.refit
        plan = run_plan(refit_sources(source.study, settings.top), settings)
        split = refit_split(session, source, settings.folds)
        data = load_data(session)
        record_refit(session, source)
        return Refit(session, data, split, plan)

    return run_trial_command("search.refit", args, argv, prepare)


if __name__ == "__main__":
    sys.exit(main())
