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
import csv
import heapq
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from polyp.data import ImageSet, read_image
from polyp.data.masks import read_raw_mask
from polyp.errors import PolypError
from polyp.evaluate.datasets import EvalSet, eval_set, named_folders
from polyp.evaluate.measures import MEASURES, ImageScores, score_image, summarize
from polyp.images import binary_mask
from polyp.io import make_folder
from polyp.plots import prediction_sheet
from polyp.predict import Predictor
from polyp.tta import TTA_MODES

WORST = 8  # images on each data set's sheet of worst predictions
SHEET_SIZE = 192  # their side on the sheet
COLUMNS = {"dice": "mDice", "iou": "mIoU", "wfm": "Fβw", "sm": "Sα", "em_mean": "mean Eφ", "em_max": "max Eφ",
           "mae": "MAE", "precision": "precision", "recall": "recall", "hd95": "HD95 px"}


def ensemble_probabilities(predictors: list[Predictor], images: list[np.ndarray], tta: str) -> list[np.ndarray]:
    """The mean probability map of every model (each with `tta`), at each image's own size."""
    total = None
    for predictor in predictors:
        maps = predictor.probabilities(images, tta)
        total = maps if total is None else [a + b for a, b in zip(total, maps, strict=True)]
    return [t / len(predictors) for t in total]


def _small(array: np.ndarray, interpolation: int) -> np.ndarray:
    return cv2.resize(array, (SHEET_SIZE, SHEET_SIZE), interpolation=interpolation)


def evaluate_set(data: EvalSet, predictors: list[Predictor], tta: str, threshold: float,
                 batch_size: int) -> tuple[list[dict], list[ImageScores], list[tuple], float]:
    """Scores every image of one data set; returns per-image rows, scores, the worst images and seconds."""
    started = time.perf_counter()
    rows, scores, worst = [], [], []  # worst: a heap of (-dice, stem, image, truth, prediction), 8 kept
    for start in range(0, len(data.pairs), max(1, batch_size)):
        chunk = data.pairs[start:start + max(1, batch_size)]
        images = [read_image(pair.image) for pair in chunk]
        truths = [data.convention.binarise(read_raw_mask(pair.mask)) for pair in chunk]
        for pair, image, truth in zip(chunk, images, truths, strict=True):
            if image.shape[:2] != truth.shape:
                raise PolypError(f"{pair.mask}: mask is {truth.shape[1]}x{truth.shape[0]} but the image is "
                                 f"{image.shape[1]}x{image.shape[0]}")
        for pair, image, truth, probability in zip(chunk, images, truths,
                                                   ensemble_probabilities(predictors, images, tta), strict=True):
            score = score_image(probability, truth, threshold)
            scores.append(score)
            rows.append({"dataset": data.name, "stem": pair.stem, "width": image.shape[1], "height": image.shape[0],
                         "polyp_area": float(truth.mean()), **score.row()})
            entry = (-score.dice, pair.stem, _small(image, cv2.INTER_AREA), _small(truth, cv2.INTER_NEAREST),
                     _small(binary_mask(probability, threshold), cv2.INTER_NEAREST))
            heapq.heappush(worst, entry) if len(worst) < WORST else heapq.heappushpop(worst, entry)
    return rows, scores, sorted(worst, reverse=True), time.perf_counter() - started


def worst_sheet(data: EvalSet, worst: list[tuple], folder: Path) -> Path:
    """`worst-<name>.png`: the lowest-Dice images of a data set, worst first."""
    images = ImageSet([w[1] for w in worst], np.stack([w[2] for w in worst]), np.stack([w[3] for w in worst]),
                      [(SHEET_SIZE, SHEET_SIZE)] * len(worst), data.convention, [bool(w[3].any()) for w in worst])
    name = data.name.replace("/", "-")
    return prediction_sheet(images, np.stack([w[4] for w in worst]), folder / f"worst-{name}.png",
                            f"{data.name}: the {len(worst)} images with the lowest Dice")


def _format(value: float, digits: int = 4) -> str:
    return "-" if value != value else f"{value:.{digits}f}"


def table_rows(summaries: dict[str, dict]) -> list[list[str]]:
    """The printed, CSV and Markdown table: a row per data set and their mean."""
    rows = []
    for name, summary in summaries.items():
        rows.append([name, str(summary["images"]), *(_format(summary[m], 2 if m == "hd95" else 4) for m in MEASURES),
                     f"{summary['seconds']:.1f}"])
    if len(summaries) > 1:
        means = {m: float(np.nanmean([s[m] for s in summaries.values()])) for m in (*MEASURES, "seconds")}
        rows.append(["mean", str(sum(s["images"] for s in summaries.values())),
                     *(_format(means[m], 2 if m == "hd95" else 4) for m in MEASURES), f"{means['seconds']:.1f}"])
    return rows


HEADER = ["data set", "images", *(COLUMNS[m] for m in MEASURES), "seconds"]


def write_outputs(folder: Path, rows: list[list[str]], per_image: list[dict]) -> list[Path]:
    """summary.csv, summary.md and per_image.csv."""
    with (folder / "summary.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([HEADER, *rows])
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    (folder / "summary.md").write_text("\n".join(lines) + "\n")
    with (folder / "per_image.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(per_image[0]))
        writer.writeheader()
        writer.writerows(per_image)
    return [folder / "summary.csv", folder / "summary.md", folder / "per_image.csv"]


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
