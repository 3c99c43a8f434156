"""One default pretrained model trained for a wall-time budget: what search.auto must beat with the same time.

    .venv/bin/python benchmarks/single_budget.py --data ../shared/data/kvasir-seg \
        --test-list ../shared/data/splits/pranet_test_kvasir.txt --eval-data cvc=../shared/data/cvc-clinicdb \
        --budget 2h --out runs/bench-single-2h

The model is `polyp.train`'s defaults (UNet++, 256 px, batch 8, AdamW at 3e-3 with one-cycle, bce+dice, medium
augmentation) with the ImageNet encoder that needs no internet (`timm-tf_efficientnet_lite0`); `--config` changes
fields (`--config threads=1,image_size=224`; run it under `OMP_NUM_THREADS=1` too, for `polyp.evaluate`, which has
no thread flag). The budget is spent as one user would spend it: a probe of one epoch
measures the epoch's seconds on this machine, then one run is trained with as many epochs as the rest of the budget
holds (less a reserve for scoring), and `polyp.evaluate` scores it on the test list and every `--eval-data` set at
the images' own sizes. It prints the epochs, the minutes of each step and the budget held, and the mDice per set.
The probe's epoch is only as slow as the machine was then: where another job shares the machine, give the
epoch's seconds measured under that load (`--epoch-seconds`) instead. A rerun goes on: a finished probe, run or evaluation is not done again (the wall time then counts this run only).
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from pathlib import Path

from commands import evaluated_mdice, step  # benchmarks/commands.py, beside this script

from polyp.config import TrainConfig, parse_config
from search.planning.budget import parse_budget

DEFAULTS = "encoder=timm-tf_efficientnet_lite0,encoder_weights=imagenet"
RESERVE = 0.05  # share of the budget kept for scoring the trained model


def epoch_seconds(history: Path) -> float:
    """The slowest epoch of a `polyp.train` history.csv (training and validation), in seconds."""
    with history.open() as handle:
        return max(float(row["seconds"]) for row in csv.DictReader(handle))


def flags(cfg: TrainConfig, fields: dict[str, str]) -> list[str]:
    """`polyp.train` flags for the changed fields (a flag per field, `_` as `-`)."""
    return [item for key in fields for item in (f"--{key.replace('_', '-')}", str(getattr(cfg, key)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="training data folder (images/, masks/)")
    parser.add_argument("--test-list", required=True, help="test image stems, kept out of training and validation")
    parser.add_argument("--eval-data", action="append", default=[], metavar="NAME=FOLDER", help="more test sets")
    parser.add_argument("--budget", default="2h", help="wall time for everything: 90m, 2h, 1h30m or seconds")
    parser.add_argument("--config", default="", help="TrainConfig fields changed from the defaults, key=value,...")
    parser.add_argument("--epoch-seconds", type=float, help="an epoch's seconds measured before (under the same load): "
                        "no probe")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    budget = parse_budget(args.budget)
    fields = dict(item.split("=", 1) for item in ",".join(filter(None, [DEFAULTS, args.config])).split(","))
    cfg = parse_config(fields, base=TrainConfig())
    out = Path(args.out)
    python = sys.executable
    common = ["--data", args.data, "--test-list", args.test_list, *flags(cfg, fields)]
    started = time.monotonic()
    minutes: dict[str, float] = {}
    probe = out / "probe"
    if args.epoch_seconds is None and not (probe / "history.csv").is_file():
        minutes["probe"] = step("probe, 1 epoch", [python, "-m", "polyp.train", *common, "--epochs", "1",
                                                   "--out", str(probe)])
    per_epoch = args.epoch_seconds or epoch_seconds(probe / "history.csv")
    spent = time.monotonic() - started
    run = out / "run"
    if not (run / "history.csv").is_file():
        epochs = max(1, math.floor((budget * (1 - RESERVE) - spent - 60) / per_epoch))  # 60 s: the run's start
        print(f"\nan epoch takes {per_epoch:.0f} s; {(budget - spent) / 60:.1f} of {budget / 60:.0f} min left: "
              f"{epochs} epochs", flush=True)
        minutes["train"] = step(f"train, {epochs} epochs", [python, "-m", "polyp.train", *common, "--epochs",
                                                            str(epochs), "--out", str(run)])
    with (run / "history.csv").open() as handle:
        epochs = len(list(csv.DictReader(handle)))
    sets = [(f"kvasir={args.data}", ["--test-list", args.test_list])] + [(item, []) for item in args.eval_data]
    results = {}
    for data, extra in sets:
        name = data.split("=", 1)[0]
        evaluation = out / f"evaluation-{name}"
        if not (evaluation / "summary.csv").is_file():
            minutes[f"evaluate {name}"] = step(f"evaluate {name}", [
                python, "-m", "polyp.evaluate", "--model", str(run / "checkpoint"), "--data", data, *extra,
                "--out", str(evaluation)])
        results[name] = evaluated_mdice(evaluation)
    wall = time.monotonic() - started
    print(f"\n{cfg.arch} {cfg.encoder} ({cfg.encoder_weights}) at {cfg.image_size} px, {epochs} epochs, "
          f"threads {cfg.threads or 'all'}")
    print("minutes: " + ", ".join(f"{name} {value:.1f}" for name, value in minutes.items())
          + f"; wall time of this run {wall / 60:.1f} of a {budget / 60:.0f} min budget ({100 * wall / budget:.0f}%)")
    print("test mDice at the images' own sizes: " + ", ".join(f"{name} {value}" for name, value in results.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
