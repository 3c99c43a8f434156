"""Does ranking a search by another hospital change the model it delivers, and what does it gain there?

Two searches of the same study on Kvasir-SEG (PraNet test list held out), alike but for `--val-data`:
1. `plain`: trials ranked by Kvasir validation mDice (the search as it was);
2. `external`: CVC-ClinicDB's videos 1-14 (`cvc-val`, never trained on) as an external validation set, trials
   ranked by the objective (`--objective`, default the mean of Kvasir validation and cvc-val).
Each search's top configurations are refit with seeds (`search.refit`, the same data flags), the refit winner
is exported and scored by `polyp.evaluate` at the images' own sizes on the Kvasir test list and on
CVC-ClinicDB's videos 15-29 (`cvc-test`: neither search saw them). The CVC halves are folders of links to the
frames under `--out` (by `sequences.csv`); nothing is copied. Running it again resumes where it stopped.

    .venv/bin/python benchmarks/cross_centre_search.py --kvasir ../shared/data/kvasir-seg \
        --test-list ../shared/data/splits/pranet_test_kvasir.txt --cvc ../shared/data/cvc-clinicdb \
        --study pretrained --trials 8 --image-size 128 --epochs 8 --top 2 --seeds 2 --refit-size 192 \
        --refit-epochs 15 --threads 2 --out runs/bench-cross-centre-search
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from commands import evaluated_mdice, step  # benchmarks/commands.py, beside this script

FIRST_TEST_SEQUENCE = 15  # CVC-ClinicDB videos below it validate (the external set), from it on test


def cvc_halves(cvc: Path, out: Path) -> tuple[Path, Path, Path]:
    """(cvc-val, cvc-test, cvc-val's groups file): CVC-ClinicDB split by video into two folders of links."""
    with open(cvc / "sequences.csv") as handle:
        sequence = {row["stem"]: int(row["sequence"]) for row in csv.DictReader(handle)}
    halves = {"cvc-val": out / "cvc-val", "cvc-test": out / "cvc-test"}
    for folder in halves.values():
        for sub in ("images", "masks"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
    for sub in ("images", "masks"):
        for path in sorted((cvc / sub).iterdir()):
            if path.stem not in sequence:
                continue
            half = halves["cvc-val" if sequence[path.stem] < FIRST_TEST_SEQUENCE else "cvc-test"]
            link = half / sub / path.name
            if not link.exists():
                link.symlink_to(path.resolve())
    groups = out / "cvc-val-sequences.csv"
    with open(groups, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["stem", "sequence"])
        writer.writerows((stem, seq) for stem, seq in sorted(sequence.items()) if seq < FIRST_TEST_SEQUENCE)
    return halves["cvc-val"], halves["cvc-test"], groups


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kvasir", required=True)
    parser.add_argument("--test-list", required=True)
    parser.add_argument("--cvc", required=True, help="CVC-ClinicDB folder with sequences.csv")
    parser.add_argument("--study", default="pretrained")
    parser.add_argument("--objective", default="mean", help="objective of the external search")
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--top", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--refit-size", type=int, default=192)
    parser.add_argument("--refit-epochs", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="runs/bench-cross-centre-search")
    args = parser.parse_args(argv)
    out, python = Path(args.out), sys.executable
    cvc_val, cvc_test, groups = cvc_halves(Path(args.cvc), out)
    data = ["--data", f"kvasir={args.kvasir}", "--test-list", f"kvasir={args.test_list}"]
    searches = {"plain": [], "external": ["--val-data", f"cvcval={cvc_val}", "--groups", f"cvcval={groups}",
                                          "--objective", args.objective]}
    results, minutes = {}, {}
    for name, extra in searches.items():
        run_dir = out / name
        common = ["--study", args.study, "--run-dir", str(run_dir), *data, *extra, "--threads", str(args.threads),
                  "--quiet"]
        minutes[f"{name} search"] = step(f"{name} search", [
            python, "-m", "search.run", *common, "--n-trials", str(args.trials), "--image-size", str(args.image_size),
            "--epochs", str(args.epochs)])
        minutes[f"{name} refit"] = step(f"{name} refit", [
            python, "-m", "search.refit", *common, "--top", str(args.top), "--seeds", str(args.seeds),
            "--image-size", str(args.refit_size), "--epochs", str(args.refit_epochs)])
        export = out / f"{name}-winner"
        if not (export / "training.json").is_file():
            step(f"{name} export", [python, "-m", "search.export", "--study", f"{args.study}.refit", "--run-dir",
                                    str(run_dir), "--out", str(export)])
        scores = {}
        for set_name, flags in (("kvasir", ["--data", f"kvasir={args.kvasir}", "--test-list", args.test_list]),
                                ("cvc-test", ["--data", f"cvctest={cvc_test}"])):
            evaluation = out / f"evaluation-{name}-{set_name}"
            step(f"evaluate {name} on {set_name}", [python, "-m", "polyp.evaluate", "--model", str(export), *flags,
                                                   "--out", str(evaluation)])
            scores[set_name] = float(evaluated_mdice(evaluation))
        trained = json.loads((export / "training.json").read_text())
        results[name] = {**scores, "config": trained.get("train_config") or trained.get("config")}
    print("\nminutes: " + ", ".join(f"{name} {value:.1f}" for name, value in minutes.items()))
    keys = ("arch", "encoder", "encoder_depth", "lr", "batch_size", "loss", "augment", "photometric", "multi_scale",
            "swa_epochs")
    for name, result in results.items():
        config = result["config"] or {}
        settings = " ".join(f"{key}={config[key]}" for key in keys if key in config)
        print(f"{name:>9}: Kvasir test mDice {result['kvasir']:.4f}, CVC-ClinicDB videos {FIRST_TEST_SEQUENCE}-29 "
              f"mDice {result['cvc-test']:.4f}; winner {settings}")
    plain, external = (results[name]["config"] or {} for name in ("plain", "external"))
    same = all(plain.get(key) == external.get(key) for key in keys)
    print("the external validation set " + ("did not change the winner" if same else "changed the winner"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
