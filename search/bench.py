"""Search efficiency: the hand-made grid (every CSV row trained to the end) against the study's default
(its sampler with pruning), on the same data and the same budget of training epochs.

Prints each method's best validation mDice against the epochs spent, and on its last line how many times
fewer epochs the study needed to match the grid's best. The grid's cost is its whole budget: a person
running a spreadsheet only knows its best row once every row has run.

Example:
    python -m search.bench --data ../shared/data/kvasir-seg --image-size 64 --epochs 4
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import optuna

from polyp.data import prepare_data
from search.cli import (
    USER_ERRORS,
    CommandLineError,
    add_data_options,
    add_forced_options,
    add_method_options,
    add_trainer_option,
    command_settings,
    fail,
    import_trainer,
)
from search.results.efficiency import epochs_to_reach, load_or_run_grid, run_grid, run_study, split_digest
from search.study.definition import load_study
from search.study.forced import with_command_line
from search.study.imagenet import check_imagenet_available
from search.study.samplers import build_pruner
from search.study.spreadsheet import read_spreadsheet


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Grid (every CSV row to the end) vs the study's default search.")
    parser.add_argument("--study", default="grid", help="study whose settings (data, size, epochs, sampler, pruner, "
                        "space) are measured (default: grid)")
    parser.add_argument("--csv", default="hyperparameters.csv", help="the grid (default: hyperparameters.csv)")
    add_data_options(parser)
    add_method_options(parser)
    add_forced_options(parser)
    add_trainer_option(parser)
    parser.add_argument("--rows", type=int, help="use only the first ROWS rows of the CSV")
    parser.add_argument("--val-fraction", type=float, help="validation share of the images instead of the study's "
                        "(a larger validation set makes both methods' best values less noisy)")
    parser.add_argument("--startup-trials", type=int, help="instead of the study's startup_trials (random trials)")
    parser.add_argument("--pruner-startup-trials", type=int,
                        help="instead of the study's pruner_startup_trials (complete trials before median prunes)")
    parser.add_argument("--warmup-epochs", type=int, help="instead of the study's warmup_epochs")
    parser.add_argument("--sampler-seed", type=int, help="seed the study's sampler with this instead of the study's "
                        "seed (the data split and the grid stay the same): repeat the study to see its spread")
    parser.add_argument("--grid-results", help="JSON file: reuse the grid's curve from it when it holds the same "
                        "grid, else run the grid and save its curve there (to compare settings without rerunning it)")
    parser.add_argument("--until-matched", action="store_true",
                        help="stop the study once it matches the grid's best instead of spending the whole budget")
    args = parser.parse_args(argv)
    try:
        if args.val_fraction is not None and args.val_fraction <= 0:
            raise CommandLineError(f"--val-fraction: {args.val_fraction} leaves no validation images, and both methods are "
                             "compared on validation mDice (val_fraction must be above 0)")
        spec = with_command_line(load_study(args.study), command_settings(args))
        if spec.run.multi_objective:
            raise CommandLineError(f"{'--objectives' if args.objectives else f'study {spec.name} [run].objectives'}: "
                                   "search.bench compares a grid and a study by the best validation mDice per epoch "
                                   "spent, one objective; give --objectives mdice")
        spec = dataclasses.replace(spec, forced={"epochs": spec.base.epochs, **spec.forced})  # one budget for both
        check_imagenet_available(spec)
        settings = {"startup_trials": args.startup_trials, "pruner_startup_trials": args.pruner_startup_trials,
                    "warmup_epochs": args.warmup_epochs, "val_fraction": args.val_fraction}
        spec = dataclasses.replace(spec, run=dataclasses.replace(
            spec.run, **{k: v for k, v in settings.items() if v is not None}))
        build_pruner(spec.run.pruner, spec)  # refuses a sampler/pruner pair now rather than after the grid has run
        trainer = import_trainer(args.trainer)
        run = spec.run
        data = prepare_data(run.sources(), spec.base.image_size, run.seed, run.val_fraction, run.test_fraction,
                            synthetic_count=run.synthetic_count, external=run.external(), val_limit=run.val_limit,
                            objective=run.objective)
        read_spreadsheet(args.csv, spec.base)
    except USER_ERRORS as error:
        return fail(str(error))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler_seed = spec.run.seed if args.sampler_seed is None else args.sampler_seed
    print(data.describe(spec.base.image_size))
    for note in data.notes():
        print(note)
    print(f"split {len(data.train)}/{len(data.val)}/{len(data.test)} at {spec.base.image_size} px, "
          f"{spec.base.epochs} epochs per trial; study {spec.name}: sampler {spec.run.sampler}, pruner {spec.run.pruner} "
          f"(startup {spec.run.startup_trials}, pruner startup {spec.run.pruner_startup_trials}, warm-up "
          f"{spec.run.warmup_epochs} epochs, sampler seed {sampler_seed})")
    print("grid (every row trained to the end):")
    key = {"csv": str(Path(args.csv).resolve()), "data": str(data.root), "split": split_digest(data),
           "image_size": spec.base.image_size, "epochs": spec.base.epochs, "rows": args.rows, "trainer": args.trainer,
           "seed": spec.run.seed}
    if data.external:  # the grid's values are objectives over these sets
        key.update(objective=data.objective, external={name: part["stems"] for name, part in data.split.external.items()})
    grid, grid_minutes = load_or_run_grid(args.grid_results, key,
                                          lambda: run_grid(spec, args.csv, data, trainer, args.rows))
    budget, grid_best = grid[-1][0], grid[-1][1]
    print(f"study ({spec.run.sampler} + {spec.run.pruner} pruning, startup {spec.run.startup_trials}, pruner startup "
          f"{spec.run.pruner_startup_trials}, warm-up "
          f"{spec.run.warmup_epochs}), same budget of {budget} epochs:")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as run_dir:
        study = run_study(spec, data, trainer, budget, Path(run_dir), grid_best if args.until_matched else None,
                          sampler_seed)
    print(f"grid:  best val mDice {grid_best:.4f}, reached after {epochs_to_reach(grid, grid_best)} epochs, "
          f"known only after all {budget} epochs ({grid_minutes:.1f} min)")
    print(f"study: best val mDice {study[-1][1]:.4f} after {study[-1][0]} epochs "
          f"({(time.perf_counter() - started) / 60:.1f} min)")
    needed = epochs_to_reach(study, grid_best)
    if needed is None:
        print(f"the study did not match the grid's best ({grid_best:.4f}) within {budget} epochs")
        return 0
    print(f"the study matched the grid's best val mDice {grid_best:.4f} after {needed} epochs against the grid's "
          f"{budget}: {budget / needed:.1f}x fewer epochs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
