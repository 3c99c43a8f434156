"""How well does each epoch's validation mDice rank configurations by their final best? (Spearman's rho)

Trains a pool of random configurations of a study to the end (`search.run --sampler random --pruner none`: no
trial is stopped), on a part of Kvasir-SEG (the PraNet test images, kept out, plus the first `--others` other
images by name, `--val-fraction` of all for validation), then prints, for every epoch k, Spearman's rho between
the configurations' validation mDice at epoch k and their final best (the trial's value). A pruner decides
after epoch k from exactly this ranking. `--encoder-weights none` trains the same space from scratch.

Run one at a time on a quiet machine (about 20 configurations x 8 epochs at 96 px: 30-40 minutes on 2 cores):
    .venv/bin/python benchmarks/early_ranking.py --data ../shared/data/kvasir-seg \
        --test-list ../shared/data/splits/pranet_test_kvasir.txt --study pretrained --trials 20
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import optuna
from scipy.stats import spearmanr

from search.study.definition import STUDIES_DIR, load_study


def part_of(data: Path, test_list: Path, others: int, folder: Path) -> Path:
    """A folder of links: the test-list images and the first `others` other images by name, with their masks."""
    test = {line.strip().rsplit(".", 1)[0] for line in test_list.read_text().splitlines() if line.strip()}
    images = sorted((data / "images").iterdir())
    chosen = [p for p in images if p.stem in test] + [p for p in images if p.stem not in test][:others]
    masks = {p.stem: p for p in (data / "masks").iterdir()}
    for kind in ("images", "masks"):
        (folder / kind).mkdir(parents=True, exist_ok=True)
    for image in chosen:
        for source, kind in ((image, "images"), (masks[image.stem], "masks")):
            link = folder / kind / source.name
            if not link.exists():
                link.symlink_to(source.resolve())
    return folder


def study_file(name: str, val_fraction: float, folder: Path) -> Path:
    """A copy of studies/NAME.toml with its `[run]` validation share set (its other settings unchanged)."""
    text = (STUDIES_DIR / f"{name}.toml").read_text()
    path = folder / f"{name}.toml"
    path.write_text(text.replace("[run]\n", f"[run]\nval_fraction = {val_fraction}\n", 1))
    return path


def rank_correlations(study: optuna.Study) -> tuple[int, list[tuple[int, float]]]:
    """(configurations, [(epoch, Spearman's rho of that epoch's value with the final best), ...])."""
    trials = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE and t.intermediate_values]
    epochs = sorted(set.intersection(*(set(t.intermediate_values) for t in trials))) if trials else []
    finals = [t.value for t in trials]
    return len(trials), [(epoch, float(spearmanr([t.intermediate_values[epoch] for t in trials], finals).statistic))
                         for epoch in epochs]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="Kvasir-SEG folder (images/, masks/)")
    parser.add_argument("--test-list", required=True, help="PraNet test list (kept out of training and validation)")
    parser.add_argument("--study", default="pretrained")
    parser.add_argument("--trials", type=int, default=20, help="configurations in the pool")
    parser.add_argument("--others", type=int, default=400, help="non-test images used (first by name)")
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--encoder-weights", help="instead of the study's (none: the same space from scratch)")
    parser.add_argument("--seed", type=int, default=101, help="random sampler seed")
    parser.add_argument("--timeout", type=float, help="seconds after which search.run starts no new trial (the pool "
                        "is then the trials that finished)")
    parser.add_argument("--out", default="runs/early-ranking")
    args = parser.parse_args(argv)
    out = Path(args.out)
    part = part_of(Path(args.data), Path(args.test_list), args.others, out / "data")
    command = [sys.executable, "-m", "search.run", "--study", str(study_file(args.study, args.val_fraction, out)),
               "--data", str(part), "--test-list", args.test_list, "--sampler", "random", "--pruner", "none",
               "--seed", str(args.seed), "--n-trials", str(args.trials), "--image-size", str(args.image_size),
               "--epochs", str(args.epochs), "--threads", "2", "--run-dir", str(out), "--quiet"]
    if args.timeout:
        command += ["--timeout", str(args.timeout)]
    if args.encoder_weights:
        command += ["--encoder-weights", args.encoder_weights]
    print(" ".join(command), flush=True)
    subprocess.run(command, check=True)
    study = optuna.load_study(study_name=load_study(args.study).name, storage=f"sqlite:///{out / 'optuna.db'}")
    count, correlations = rank_correlations(study)
    finals = sorted((t.value for t in study.trials if t.value is not None), reverse=True)
    print(f"{count} configurations trained {args.epochs} epochs at {args.image_size} px; final best val mDice "
          f"{finals[0]:.4f} .. {finals[-1]:.4f}")
    print("Spearman's rho, epoch k's val mDice against the final best: "
          + ", ".join(f"epoch {epoch}: {rho:.2f}" for epoch, rho in correlations))
    return 0


if __name__ == "__main__":
    sys.exit(main())
