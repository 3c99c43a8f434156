"""A trial's model on the study's test split, scored as `polyp.evaluate` scores a test set.

`search.export` keeps these scores in the exported `training.json` and `search.analyze` shows them for the
best trial, so the export, the report and `polyp.evaluate` agree: every measure, at each image's own size,
threshold 0.5, no test-time augmentation.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from polyp.data import Split, resolve_data_dir
from polyp.evaluate.datasets import eval_set
from polyp.evaluate.measures import MEASURES, summarize
from polyp.evaluate.scoring import evaluate_set
from polyp.images import MASK_THRESHOLD
from polyp.predict import Predictor
from search.engine.session import Session


def describe(scores: dict) -> str:
    """The scores in one line, as search.export and search.analyze print them."""
    return (f"({scores['images']} images): mDice {scores['dice']:.4f}, mIoU {scores['iou']:.4f}, Fβw {scores['wfm']:.4f}, "
            f"Sα {scores['sm']:.4f}, mean Eφ {scores['em_mean']:.4f}, MAE {scores['mae']:.4f}")


def split_parts(run, split: Split, image_size: int, which: str = "test") -> list[tuple[str, Path, list[str]]]:
    """(set name, folder, stems) of each training set's part of the split's `which` images ("test" or "val"):
    one folder, or each set's part of a split of several."""
    stems_of = getattr(split, which)
    if not split.sets:
        source = run.sources()[0]
        return [(source.name, resolve_data_dir(source.folder, run.synthetic_count, synthetic_size=image_size), stems_of)]
    parts = []
    for source in run.sources():  # the folders as this machine names them (split.json keeps where it was made)
        stems = [stem[len(source.name) + 1:] for stem in stems_of if stem.startswith(f"{source.name}/")]
        if stems:
            parts.append((source.name, resolve_data_dir(source.folder, run.synthetic_count, synthetic_size=image_size),
                          stems))
    return parts


def score_test_split(session: Session, model: nn.Module, image_size: int, normalization: tuple) -> dict:
    """The study's test images scored as `polyp.evaluate` scores them: at their own sizes, every measure.

    Args:
        normalization: the (mean, std) the model expects (`polyp.models.input_normalization`).
    """
    run = session.spec.run
    manifest = session.folder / "split.json"
    if not manifest.is_file():
        return {}
    split = Split.load(manifest)
    predictor = Predictor(model, image_size, *normalization)
    scores, seconds = [], 0.0
    for _, root, stems in split_parts(run, split, session.spec.base.image_size):
        _, part, _, spent = evaluate_set(eval_set("test", root, stems=stems), [predictor], "none", MASK_THRESHOLD, 8)
        scores += part
        seconds += spent
    if not scores:
        return {}
    summary = summarize(scores)
    return {"images": summary["images"], **{name: summary[name] for name in MEASURES},
            "negatives_with_false_positive": summary["negatives_with_false_positive"], "seconds": round(seconds, 2),
            "how": "polyp.evaluate's measures at each image's own size, threshold 0.5, no TTA"}
