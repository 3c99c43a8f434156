"""Scoring models on test sets: the ensemble's probabilities, every image's measures, the tables and sheets.

`python -m polyp.evaluate` is its command line; `search.export` scores an exported model's test split with it.
"""

from __future__ import annotations

import csv
import heapq
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from polyp.data import DataError, ImageSet, read_image
from polyp.data.masks import read_raw_mask
from polyp.evaluate.datasets import EvalSet
from polyp.evaluate.measures import MEASURES, ImageScores, score_image
from polyp.images import binary_mask
from polyp.plots import prediction_sheet
from polyp.predict import Predictor

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


def evaluate_set(data: EvalSet, predictors: list[Predictor], tta: str, threshold: float, batch_size: int,
                 on_image: Callable[[np.ndarray, np.ndarray], None] | None = None
                 ) -> tuple[list[dict], list[ImageScores], list[tuple], float]:
    """Scores every image of one data set; returns per-image rows, scores, the worst images and seconds.

    `on_image(probability, truth)` is also told every image's map and truth (at its own size), e.g. to draw a
    reliability plot (polyp.evaluate.calibration)."""
    started = time.perf_counter()
    rows, scores, worst = [], [], []  # worst: a heap of (-dice, stem, image, truth, prediction), 8 kept
    for start in range(0, len(data.pairs), max(1, batch_size)):
        chunk = data.pairs[start:start + max(1, batch_size)]
        images = [read_image(pair.image) for pair in chunk]
        truths = [data.convention.binarise(read_raw_mask(pair.mask)) for pair in chunk]
        for pair, image, truth in zip(chunk, images, truths, strict=True):
            if image.shape[:2] != truth.shape:
                raise DataError(f"{pair.mask}: mask is {truth.shape[1]}x{truth.shape[0]} but the image is "
                                 f"{image.shape[1]}x{image.shape[0]}")
        for pair, image, truth, probability in zip(chunk, images, truths,
                                                   ensemble_probabilities(predictors, images, tta), strict=True):
            score = score_image(probability, truth, threshold)
            if on_image is not None:
                on_image(probability, truth)
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
