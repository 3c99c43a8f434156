"""search.auto's delivery: the chosen model exported (safetensors + ONNX checked against PyTorch, as
search.export writes it) and scored on the test split and every --eval-data set as polyp.evaluate scores them,
with what the model card adds: mDice over thresholds, a reliability plot, the worst images."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from polyp.checkpoint import load_checkpoint
from polyp.data import Split
from polyp.evaluate.calibration import Reliability, dice_curve
from polyp.evaluate.datasets import EvalSet, eval_set, named_folders
from polyp.evaluate.measures import summarize
from polyp.evaluate.scoring import evaluate_set, table_rows, worst_sheet, write_outputs
from polyp.io import write_json
from polyp.latency import Latency
from polyp.plots import reliability_plot
from polyp.predict import Predictor
from search.engine.session import Session
from search.planning.choice import Choice
from search.results.checkpoint_export import (
    ONNX_TOLERANCE,
    TRAINING_FILE,
    check_destination,
    export_trial,
    record_export_latency,
    write_onnx,
)
from search.results.ensembles import export_ensemble
from search.results.split_scores import split_parts
from search.study.errors import StudyError


@dataclass
class SetResult:
    """One scored set: polyp.evaluate's summary, mDice over thresholds, calibration and its worst-images sheet."""

    name: str
    root: Path  # the set's folder
    summary: dict
    mdice_thresholds: float
    reliability: list[dict]
    ece: float
    worst: Path
    extra: dict = field(default_factory=dict)


class _Curves:
    """The images' Dice-over-thresholds curves; `mean()`: the toolboxes' meanDic (curves averaged, then thresholds)."""

    def __init__(self):
        self.curves: list[np.ndarray] = []

    def add(self, probability: np.ndarray, truth: np.ndarray) -> None:
        self.curves.append(dice_curve(probability, truth))

    def mean(self) -> float:
        return float(np.mean(np.mean(self.curves, axis=0)))


def export_choice(refit: Session, choice: Choice, out: Path) -> tuple[dict, Latency, float]:
    """Writes the chosen model into `out` with model.onnx; returns its training.json facts, latency and the largest
    ONNX-PyTorch difference. The choice is kept in training.json as "auto" (TTA, threshold, why)."""
    for leftover in out.glob(".*.tmp") if out.is_dir() else []:  # an atomic write an interrupted delivery left
        leftover.unlink()
    check_destination(out, refit.run_dir)
    trials = {t.number: t for t in refit.study.get_trials(deepcopy=False)}
    if choice.candidate.kind == "single":
        export_trial(refit, trials[choice.candidate.runs[0]], out, False, {})
    else:
        export_ensemble(refit, out, choice.candidate.kind)
    model, info = load_checkpoint(out)  # what polyp.predict will do: fail here, not there
    difference = write_onnx(model, out, info.image_size)
    if difference > ONNX_TOLERANCE:
        raise StudyError(f"{out / 'model.onnx'}: differs from the PyTorch model by {difference:.3g} (> {ONNX_TOLERANCE})")
    latency = record_export_latency(model, out, info.image_size)
    path = out / TRAINING_FILE
    facts = json.loads(path.read_text())
    facts["auto"] = {"kind": choice.candidate.kind, "runs": list(choice.candidate.runs), "tta": choice.tta,
                     "threshold": choice.threshold, "val_mdice": choice.val_mdice, "chosen_by": "validation only"}
    write_json(path, facts)
    return facts, latency, difference


def test_sets(refit: Session) -> list[EvalSet]:
    """The test images of each training set (the --test-list, or the split's seeded test share)."""
    split = Split.load(refit.folder / "split.json")
    return [eval_set(f"{name}/test", root, stems=stems)
            for name, root, stems in split_parts(refit.spec.run, split, refit.spec.base.image_size, "test")]


def extra_sets(values: list[str]) -> list[EvalSet]:
    """Every --eval-data set (NAME=FOLDER or FOLDER; a folder of data sets gives one per subfolder)."""
    return [eval_set(name, folder) for name, folder in named_folders(values)]


def score_sets(model: Path, sets: list[EvalSet], choice: Choice, folder: Path) -> list[SetResult]:
    """Scores the exported model on every set with the chosen TTA and threshold; writes polyp.evaluate's files
    (summary.csv, summary.md, per_image.csv, worst-<set>.png) and a reliability plot per set into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    predictor = Predictor.from_folder(model)[0]
    results, per_image, summaries = [], [], {}
    for data in sets:
        curves, reliability = _Curves(), Reliability()
        rows, scores, worst, seconds = evaluate_set(data, [predictor], choice.tta, choice.threshold, 8,
                                                    on_image=lambda p, t, c=curves, r=reliability: (c.add(p, t), r.add(p, t)))
        summary = {**summarize(scores), "seconds": seconds}
        summaries[data.name] = summary
        per_image += rows
        sheet = worst_sheet(data, worst, folder)
        results.append(SetResult(data.name, data.root, summary, curves.mean(), reliability.rows(),
                                 reliability.ece(), sheet))
    write_outputs(folder, table_rows(summaries), per_image)
    reliability_plot({r.name: (r.reliability, r.ece) for r in results}, folder / "reliability.png")
    return results
