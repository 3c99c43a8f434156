"""The whole path from a search to the model a person ships, on Kvasir-SEG, timed step by step.

1. `search.run` of a study at a small size (`--search-size`, `--search-epochs`, `--trials`);
2. `search.refit` of its top configurations at the refit size and length, with several seeds;
3. `search.export` of the winner's best run, of all its runs as one ensemble (`--ensemble`) and of the best run
   of each refit configuration as one ensemble (`--ensemble top`);
4. `polyp.evaluate` of the three exports, and of every refit run alone (each configuration's seeds), on the
   PraNet test list at the images' own sizes;
5. the comparison: the README's default model (`polyp.train --arch linknet --encoder resnet34`, from scratch) at
   the refit's size and length, `--baseline-seeds` seeds, evaluated the same way.

Prints each command with its wall time, the refit table (with Spearman's rho between the search's ranking and
the refit's) and the exports' test mDice. Everything goes to `--out` (the run folder, the exports and the
evaluations); running it again resumes where it stopped. The choice of the winner uses validation only.

    .venv/bin/python benchmarks/refit_path.py --data ../shared/data/kvasir-seg \
        --test-list ../shared/data/splits/pranet_test_kvasir.txt --study pretrained --trials 7 \
        --search-size 96 --search-epochs 8 --top 2 --seeds 2 --refit-size 128 --refit-epochs 8 \
        --threads 1 --refit-workers 2

(the settings of the README's figures: what fitted in about 1.5 hours on a 2-core machine with this study's
EfficientNet-Lite2 U-Nets; 160 px and 25 epochs take several times that there).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import optuna
from commands import evaluated_mdice, step  # benchmarks/commands.py, beside this script

from search.engine.record import TrialRecord
from search.engine.storage import default_storage_url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--test-list", required=True)
    parser.add_argument("--study", default="pretrained")
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--search-size", type=int, default=96)
    parser.add_argument("--search-epochs", type=int, default=8)
    parser.add_argument("--top", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--refit-size", type=int, default=160)
    parser.add_argument("--refit-epochs", type=int, default=25)
    parser.add_argument("--threads", type=int, default=2, help="threads of each training process")
    parser.add_argument("--refit-workers", type=int, default=1, help="refit processes at once (with --threads 1: "
                        "one core each)")
    parser.add_argument("--baseline-seeds", type=int, default=2, help="seeds of the default model (0 for none)")
    parser.add_argument("--out", default="runs/refit-path")
    args = parser.parse_args(argv)
    out, python = Path(args.out), sys.executable
    common = ["--study", args.study, "--run-dir", str(out / "runs"), "--data", args.data, "--test-list", args.test_list,
              "--threads", str(args.threads), "--quiet"]
    minutes = {
        "search": step("search", [python, "-m", "search.run", *common, "--n-trials", str(args.trials),
                                  "--image-size", str(args.search_size), "--epochs", str(args.search_epochs)]),
        "refit": step("refit", [python, "-m", "search.refit", *common, "--top", str(args.top), "--seeds",
                                str(args.seeds), "--image-size", str(args.refit_size), "--epochs",
                                str(args.refit_epochs), "--workers", str(args.refit_workers)]),
    }
    refit = f"{args.study}.refit"
    exports = {"winner": (out / "winner", []), "ensemble": (out / "ensemble", ["--ensemble", "winner"]),
               "top ensemble": (out / "top-ensemble", ["--ensemble", "top"])}
    minutes["export"] = 0.0
    for name, (folder, flags) in exports.items():
        minutes["export"] += step(f"export {name}", [python, "-m", "search.export", "--study", refit, "--run-dir",
                                                     str(out / "runs"), "--out", str(folder), *flags])
    results = {}
    for name, (folder, _) in exports.items():
        evaluation = out / f"evaluation-{folder.name}"
        minutes[f"evaluate {name}"] = step(f"evaluate {name}", [
            python, "-m", "polyp.evaluate", "--model", str(folder), "--data", f"kvasir={args.data}",
            "--test-list", args.test_list, "--out", str(evaluation)])
        results[name] = evaluated_mdice(evaluation)
    runs = sorted((out / "runs" / refit).glob("trial-*/checkpoint"), key=lambda path: int(path.parent.name[6:]))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    records = {t.number: TrialRecord.of(t) for t in optuna.load_study(
        study_name=refit, storage=default_storage_url(out / "runs")).get_trials(deepcopy=False)}
    for checkpoint in runs:  # every refit run alone (each configuration's seeds, folds)
        trial = checkpoint.parent.name
        record = records[int(trial[6:])]
        evaluation = out / f"evaluation-refit-{trial}"
        step(f"evaluate refit {trial}", [python, "-m", "polyp.evaluate", "--model", str(checkpoint), "--data",
                                         f"kvasir={args.data}", "--test-list", args.test_list, "--out", str(evaluation)])
        results[f"refit {trial} (search trial {record.refit_source}, seed {record.refit_seed})"] = evaluated_mdice(evaluation)
    for seed in range(args.baseline_seeds):
        folder = out / f"default-seed{seed}"
        if not (folder / "checkpoint").is_dir():  # resumes: a finished baseline is not trained again
            minutes[f"default seed {seed}"] = step(f"default seed {seed}", [
                python, "-m", "polyp.train", "--data", args.data, "--test-list", args.test_list, "--arch", "linknet",
                "--encoder", "resnet34", "--image-size", str(args.refit_size), "--epochs", str(args.refit_epochs),
                "--seed", str(seed), "--threads", str(args.threads * args.refit_workers), "--out", str(folder)])
        evaluation = out / f"evaluation-default-seed{seed}"
        step(f"evaluate default seed {seed}", [python, "-m", "polyp.evaluate", "--model", str(folder / "checkpoint"),
                                               "--data", f"kvasir={args.data}", "--test-list", args.test_list,
                                               "--out", str(evaluation)])
        results[f"default Linknet-R34 seed {seed}"] = evaluated_mdice(evaluation)
    print("\nminutes: " + ", ".join(f"{name} {value:.1f}" for name, value in minutes.items())
          + f"; the path (search to evaluated exports, no default model) {sum(v for k, v in minutes.items() if not k.startswith('default')):.1f}")
    print("test mDice at the images' own sizes (PraNet Kvasir list): "
          + ", ".join(f"{name} {value}" for name, value in results.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
