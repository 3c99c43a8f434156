"""What search.auto ships, decided on the validation images alone: the best refit run, or an ensemble of the
winning configuration's runs or of each configuration's best run; test-time augmentation or not; the threshold.

Every candidate is scored at the images' own sizes (mDice, as polyp.evaluate scores it) on each validation set
(the in-domain split of every training set and every --val-data set), and ranked by the mean over the sets. A
costlier candidate (more forward passes per image: models x TTA passes; then a threshold further from 0.5) is
chosen only when no cheaper one is within `MARGIN` of the best: a gain smaller than that is within the noise of
100 images. Given a deadline, a candidate whose scoring of the delivery's images (at the forward-pass speed the
choice itself measured) would pass it is left out, and the run's budget holds.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from optuna.trial import FrozenTrial

from polyp.config import parse_config
from polyp.data import DataError, Split, read_image
from polyp.data.masks import read_raw_mask
from polyp.evaluate.calibration import dice_at
from polyp.evaluate.datasets import EvalSet, eval_set
from polyp.models import input_normalization
from polyp.predict import Predictor
from search.engine.artifacts import checkpoint_folder
from search.engine.record import TrialRecord, trial_value
from search.engine.session import Session
from search.planning.plan import DELIVER_FIXED_S, SCORE_S
from search.results.ensembles import top_runs, winner_runs
from search.results.split_scores import split_parts
from search.study.errors import StudyError

FROM_D4 = {"none": (0,), "flip": (0, 1, 5), "d4": tuple(range(8))}  # each TTA mode's passes among d4's 8
# (polyp.tta.symmetries: the identity, its mirror, the mirrored half turn = the vertical flip): d4's passes are
# computed once per image and each mode averages its own
THRESHOLDS = tuple(round(0.2 + 0.05 * step, 2) for step in range(13))  # 0.2 .. 0.8 (a tversky-trained model chose
# 0.7, the edge of 0.3 .. 0.7, on Kvasir-SEG)
MARGIN = 0.002
BATCH = 8


@dataclass(frozen=True)
class Candidate:
    kind: str  # single | winner (the winning configuration's runs) | top (each configuration's best run)
    runs: tuple[int, ...]  # refit trial numbers


@dataclass(frozen=True)
class Choice:
    """The chosen candidate, its TTA and threshold, its validation mDice, and every candidate's score."""

    candidate: Candidate
    tta: str
    threshold: float
    val_mdice: float
    scores: list[dict] = field(default_factory=list)  # kind, runs, tta, threshold, val_mdice (mean over sets)
    left_out: int = 0  # better candidates left out because scoring the delivery's images would pass the deadline

    def describe(self) -> str:
        what = {"single": f"refit run {self.candidate.runs[0]}", "winner": f"the ensemble of the winning "
                f"configuration's {len(self.candidate.runs)} runs", "top": f"the ensemble of each configuration's "
                f"best run ({len(self.candidate.runs)} models)"}[self.candidate.kind]
        why = (f" ({self.left_out} costlier candidate{'s' * (self.left_out > 1)} left out: scoring would pass the "
               f"budget)" if self.left_out else "")
        return f"{what}, TTA {self.tta}, threshold {self.threshold:g}: validation mDice {self.val_mdice:.4f}{why}"


def _input(trial: FrozenTrial) -> tuple:
    config = parse_config(TrialRecord.of(trial).config)
    return config.image_size, tuple(map(tuple, input_normalization(config)))


def candidates(refit: Session) -> list[Candidate]:
    """The single best run, and the two ensembles where they have 2+ models that take the same input (an
    ensemble folder holds models of one input size and normalisation)."""
    runs = {"winner": winner_runs(refit), "top": top_runs(refit)}
    best = max(runs["winner"] + runs["top"], key=trial_value)
    found = [Candidate("single", (best.number,))]
    found += [Candidate(kind, tuple(t.number for t in trials)) for kind, trials in runs.items()
              if len(trials) > 1 and len({_input(t) for t in trials}) == 1]
    return found


def validation_sets(refit: Session) -> list[EvalSet]:
    """The validation images of the run's split, per set: each training set's and each --val-data set's."""
    split = Split.load(refit.folder / "split.json")
    sets = [eval_set(name, root, stems=stems) for name, root, stems in split_parts(refit.spec.run, split,
                                                                                   refit.spec.base.image_size, "val")]
    for name, part in split.external.items():
        sets.append(eval_set(name, Path(part["folder"]), stems=list(part["stems"])))
    if not sets:
        raise DataError(f"{refit.folder / 'split.json'}: no validation images to choose on")
    return sets


def _passes(score: dict) -> int:
    """Forward passes per image: models x TTA passes."""
    return len(score["runs"]) * len(FROM_D4[score["tta"]])


def _cost(score: dict) -> tuple:
    """What a candidate costs to use: forward passes per image, then how far its threshold is from 0.5."""
    return _passes(score), round(abs(score["threshold"] - 0.5), 2), -score["val_mdice"]


def choose(refit: Session, batch_size: int = BATCH, deadline: float | None = None, scored_images: int = 0) -> Choice:
    """Scores every candidate x TTA x threshold on the validation sets and picks one (see the module docstring).

    Args:
        deadline: when the delivery must end (Unix time); None: no limit.
        scored_images: the images the delivery then scores with the chosen candidate.
    """
    pass_seconds, passes_done = 0.0, 0
    found = candidates(refit)
    trials = {t.number: t for t in refit.study.get_trials(deepcopy=False)}
    needed = sorted({number for candidate in found for number in candidate.runs})
    sums: dict[tuple, np.ndarray] = {}  # (candidate, tta, set) -> sum over images of Dice at each threshold
    counts: dict[str, int] = {}
    with contextlib.ExitStack() as stack:
        predictors = {number: _predictor(stack, refit, trials[number]) for number in needed}
        for data in validation_sets(refit):
            counts[data.name] = len(data.pairs)
            for start in range(0, len(data.pairs), batch_size):
                chunk = data.pairs[start:start + batch_size]
                images = [read_image(pair.image) for pair in chunk]
                truths = [data.convention.binarise(read_raw_mask(pair.mask)).astype(bool) for pair in chunk]
                started = time.perf_counter()
                passes = {n: p.pass_probabilities(images, "d4") for n, p in predictors.items()}
                pass_seconds += time.perf_counter() - started
                passes_done += len(FROM_D4["d4"]) * len(images) * len(predictors)
                for tta, chosen in FROM_D4.items():
                    for candidate in found:
                        for index, truth in enumerate(truths):
                            probability = np.mean([passes[n][k][index] for n in candidate.runs for k in chosen], axis=0)
                            key = (candidate, tta, data.name)
                            sums[key] = sums.get(key, 0) + dice_at(probability, truth, THRESHOLDS)
    scores = []
    for candidate in found:
        for tta in FROM_D4:
            per_set = np.mean([sums[(candidate, tta, name)] / counts[name] for name in counts], axis=0)
            scores += [{"kind": candidate.kind, "runs": list(candidate.runs), "tta": tta, "threshold": threshold,
                        "val_mdice": float(value), "candidate": candidate} for threshold, value in zip(THRESHOLDS, per_set, strict=True)]
    seconds = None
    if deadline is not None:  # a forward pass's seconds, as measured above; what is left for scoring
        seconds = (pass_seconds / max(1, passes_done), deadline - time.time() - SCORE_S * scored_images)
    return pick(scores, scored_images, seconds)


def pick(scores: list[dict], scored_images: int = 0, seconds: tuple[float, float] | None = None) -> Choice:
    """The choice among scored candidates (each a dict of kind, runs, tta, threshold, val_mdice, candidate).

    `seconds`: (seconds per forward pass, seconds left for exporting and scoring) — a candidate whose export
    (each of its models) and passes over the `scored_images` would not fit is left out (when none fits: the
    cheapest); None: no limit."""
    pool = scores
    if seconds is not None:
        per_pass, room = seconds
        pool = [s for s in scores if DELIVER_FIXED_S * len(s["runs"]) + _passes(s) * scored_images * per_pass <= room]
        pool = pool or [s for s in scores if _passes(s) == min(map(_passes, scores))]
    best = max(score["val_mdice"] for score in pool)
    near = [s for s in pool if s["val_mdice"] >= best - MARGIN]
    chosen = min(near, key=_cost)
    kept = {(s["kind"], s["tta"]) for s in pool}
    left_out = len({(s["kind"], s["tta"]) for s in scores
                    if (s["kind"], s["tta"]) not in kept and s["val_mdice"] > chosen["val_mdice"] + MARGIN})
    return Choice(chosen["candidate"], chosen["tta"], chosen["threshold"], chosen["val_mdice"],
                  [{k: v for k, v in s.items() if k != "candidate"} for s in scores], left_out)


def _predictor(stack: contextlib.ExitStack, refit: Session, trial: FrozenTrial) -> Predictor:
    folder = stack.enter_context(checkpoint_folder(refit.artifacts, refit.run_dir, refit.spec.name, trial))
    if folder is None:
        raise StudyError(f"refit run {trial.number} of {refit.spec.name} kept no checkpoint")
    return Predictor.from_folder(folder)[0]
