"""search.auto on real data against the figures it must beat: the Kvasir test-list mDice it delivers within the
budget, how much of the budget it used (wall time, measured here around the command), and the comparison.

    .venv/bin/python benchmarks/auto.py --data kvasir=../shared/data/kvasir-seg \
        --test-list kvasir=../shared/data/splits/pranet_test_kvasir.txt --eval-data cvc=../shared/data/cvc-clinicdb \
        --budget 2h --out runs/bench-auto

Runs `python -m search.auto` with the given flags (a rerun resumes it: the wall time then counts this run only),
then prints the budget held and the delivered model's scores from `OUT/evaluation/summary.csv` next to the
reference figures: the refit path (search, refit, export by hand: 0.8405 on the Kvasir test list in 92 minutes)
and one hand-chosen model (UNet++, ImageNet Lite0, deep supervision, 192 px, 16 epochs: 0.867 in 20 minutes,
0.787 on CVC-ClinicDB). `--table OUT` prints the comparison of a finished run again without running anything.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

REFERENCES = {"refit path (benchmarks/refit_path.py), 92 min": {"kvasir": 0.8405},
              "hand-chosen UNet++ Lite0 DS 192 px 16 epochs, 20 min": {"kvasir": 0.867, "cvc": 0.787}}
TARGET = 0.87


def scores(out: Path) -> dict[str, dict[str, str]]:
    with (out / "evaluation" / "summary.csv").open() as handle:
        return {row["data set"]: row for row in csv.DictReader(handle)}


def table(out: Path, budget: str, wall: float | None) -> str:
    rows = scores(out)
    facts = json.loads((out / "model" / "training.json").read_text())
    lines = [f"search.auto --budget {budget}: {facts['auto']['kind']} model, TTA {facts['auto']['tta']}, threshold "
             f"{facts['auto']['threshold']}, validation mDice {facts['auto']['val_mdice']:.4f}"]
    if wall is not None:
        lines.append(f"wall time of this run of the command: {wall / 60:.1f} min")
    log = (out / "progress.log").read_text().splitlines()
    done = [line for line in log if " done in " in line]
    if done:
        lines.append(done[-1].split(" ", 2)[2])
    lines.append("| set | images | mDice | mIoU | Sα | mean Eφ | Fβw | MAE |")
    lines.append("|---|---|---|---|---|---|---|---|")
    for name, row in rows.items():
        lines.append(f"| {name} | {row['images']} | {row['mDice']} | {row['mIoU']} | {row['Sα']} | {row['mean Eφ']} | "
                     f"{row['Fβw']} | {row['MAE']} |")
    for name, figures in REFERENCES.items():
        lines.append(f"reference, {name}: " + ", ".join(f"{k} {v:.4f}" for k, v in figures.items()))
    kvasir = next((float(row["mDice"]) for name, row in rows.items() if name.startswith("kvasir")), None)
    if kvasir is not None:
        lines.append(f"target: Kvasir test-list mDice >= {TARGET} -> {kvasir:.4f}: "
                     f"{'reached' if kvasir >= TARGET else 'not reached'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--budget", default="2h")
    parser.add_argument("--table", action="store_true", help="print the comparison of a finished run only")
    args, rest = parser.parse_known_args(argv)
    out = Path(args.out)
    wall = None
    if not args.table:
        command = [sys.executable, "-m", "search.auto", "--budget", args.budget, "--out", str(out), *rest]
        started = time.monotonic()
        code = subprocess.call(command)
        wall = time.monotonic() - started
        if code:
            print(f"search.auto ended with status {code} after {wall / 60:.1f} min", file=sys.stderr)
            return code
    print(table(out, args.budget, wall))
    return 0


if __name__ == "__main__":
    sys.exit(main())
