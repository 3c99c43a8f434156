"""`python -m polyp.evaluate`: score models on test sets the way polyp papers report them.

Prints one row per data set (images, mDice, mIoU, Fβw, Sα, mean and max Eφ, MAE, precision, recall, HD95 and
seconds) and the mean over data sets, and writes `summary.csv`, `summary.md`, `per_image.csv` and, per data
set, `worst-<name>.png` (its 8 lowest-Dice images: image | truth | prediction | overlay) into `--out`.

Example:
    python -m polyp.evaluate --model runs/linknet-r34/checkpoint --data kvasir=~/data/kvasir-seg \
        --test-list pranet_test_kvasir.txt --tta d4 --out evaluation/
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from polyp.errors import PolypError
from polyp.evaluate.datasets import eval_set, named_folders
from polyp.evaluate.measures import summarize
from polyp.evaluate.scoring import HEADER, evaluate_set, table_rows, worst_sheet, write_outputs
from polyp.io import make_folder
from polyp.predict import Predictor
from polyp.tta import TTA_MODES


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m polyp.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", required=True,
                        help="checkpoint folder; repeat it for an ensemble (the mean of the models' probabilities)")
    parser.add_argument("--data", action="append", required=True,
                        help="NAME=FOLDER or FOLDER (repeatable); a folder of data sets (PraNet's TestDataset/) "
                             "gives one per subfolder")
    parser.add_argument("--test-list", help="score only the stems listed in this file (in every --data)")
    parser.add_argument("--tta", default="none", choices=TTA_MODES,
                        help="test-time augmentation: none, flip (3 passes) or d4 (8 flips and rotations)")
    parser.add_argument("--threshold", type=float, default=0.5, help="probability above which a pixel is polyp")
    parser.add_argument("--out", default="evaluation", help="folder for the tables and sheets (default evaluation/)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--batch-size", type=int, default=8, help="images per forward pass")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if not 0 < args.threshold < 1:
            raise PolypError(f"--threshold {args.threshold}: must be between 0 and 1")
        predictors = [Predictor.from_folder(folder, args.device)[0] for folder in args.model]
        sets = [eval_set(name, folder, Path(args.test_list) if args.test_list else None)
                for name, folder in named_folders(args.data)]
        out = make_folder(args.out, "--out")
    except PolypError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    models = f"{len(predictors)} models (ensemble)" if len(predictors) > 1 else args.model[0]
    print(f"polyp.evaluate: {models}, tta {args.tta}, threshold {args.threshold}", flush=True)
    summaries, per_image = {}, []
    for data in sets:
        rows, scores, worst, seconds = evaluate_set(data, predictors, args.tta, args.threshold, args.batch_size)
        per_image += rows
        summaries[data.name] = {**summarize(scores), "seconds": seconds}
        worst_sheet(data, worst, out)
        negatives = sum(score.truth_empty for score in scores)
        if negatives:
            print(f"  {data.name}: {negatives} image(s) without a polyp, "
                  f"{summaries[data.name]['negatives_with_false_positive']} of them with a predicted polyp", flush=True)
    rows = table_rows(summaries)
    widths = [max(len(str(cell)) for cell in column) for column in zip(HEADER, *rows, strict=True)]
    for row in (HEADER, *rows):
        print("  ".join(str(cell).rjust(width) for cell, width in zip(row, widths, strict=True)))
    files = write_outputs(out, rows, per_image)
    print(f"wrote {', '.join(path.name for path in files)} and {len(sets)} worst-image sheet(s) to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
