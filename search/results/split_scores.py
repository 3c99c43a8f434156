"""A trial's model on the study's test split, scored as `polyp.evaluate` scores a test set.

`search.export` keeps these scores in the exported `training.json` and `search.analyze` shows them for the
best trial, so the export, the report and `polyp.evaluate` agree: every measure, at each image's own size,
threshold 0.5, no test-time augmentation.
"""

from __future__ import annotations

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


def score_test_split(session: Session, model: nn.Module, image_size: int, normalization: tuple) -> dict:
    """The study's test images scored as `polyp.evaluate` scores them: at their own sizes, every measure.

    Args:
        normalization: the (mean, std) the model expects (`polyp.models.input_normalization`).
    """
    run = session.spec.run
    manifest = session.folder / "split.json"
    if not manifest.is_file():
        return {}
    root = resolve_data_dir(run.data, run.synthetic_count, synthetic_size=session.spec.base.image_size)
    test = eval_set("test", root, stems=Split.load(manifest).test)
    _, scores, _, seconds = evaluate_set(test, [Predictor(model, image_size, *normalization)], "none", MASK_THRESHOLD, 8)
    summary = summarize(scores)
    return {"images": summary["images"], **{name: summary[name] for name in MEASURES},
            "negatives_with_false_positive": summary["negatives_with_false_positive"], "seconds": round(seconds, 2),
            "how": "polyp.evaluate's measures at each image's own size, threshold 0.5, no TTA"}
