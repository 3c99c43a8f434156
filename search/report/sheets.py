"""Pictures of the top trials' models for the report: a prediction sheet per trial on the same fixed test
images, and a Grad-CAM sheet of the best one."""

from __future__ import annotations

from pathlib import Path

from optuna.trial import FrozenTrial
from torch import nn

from polyp.checkpoint import CheckpointError, load_checkpoint
from polyp.data import ImageSet
from polyp.plots import gradcam_sheet, predict_masks, prediction_sheet
from search.outputs import trial_dir


def load_trial_model(run_dir: Path, study_name: str, trial: FrozenTrial, image_size: int) -> nn.Module:
    """The best-epoch model a trial kept in `trial-N/checkpoint/`.

    Raises:
        CheckpointError: no checkpoint (pruned and failed trials keep none), or one that does not load or
            was trained at another image size than the report's images.
    """
    folder = trial_dir(run_dir, study_name, trial.number) / "checkpoint"
    if not folder.is_dir():
        raise CheckpointError(f"trial {trial.number} ({trial.state.name.lower()}) kept no checkpoint")
    model, info = load_checkpoint(folder)
    if info.image_size != image_size:
        raise CheckpointError(f"{folder}: trained at {info.image_size} px, the study's images are {image_size} px")
    return model


def prediction_sheets(run_dir: Path, study_name: str, trials: list[FrozenTrial], sample: ImageSet,
                      folder: Path) -> dict[int, Path | str]:
    """Writes `predictions-trial-N.png` for each trial, all on the same `sample` images.

    Returns:
        trial number -> the sheet written, or why there is none.
    """
    size = sample.images.shape[1]
    sheets: dict[int, Path | str] = {}
    for trial in trials:
        try:
            model = load_trial_model(run_dir, study_name, trial, size)
        except CheckpointError as error:
            sheets[trial.number] = str(error)
            continue
        title = f"{study_name} trial {trial.number} (val mDice {trial.value:.4f})"
        sheets[trial.number] = prediction_sheet(sample, predict_masks(model, sample), folder / f"predictions-trial-{trial.number}.png",
                                                title)
    return sheets


def gradcam_for(run_dir: Path, study_name: str, trial: FrozenTrial, sample: ImageSet, folder: Path) -> Path | str:
    """Writes `gradcam-trial-N.png` (image, prediction, Grad-CAM) for one trial; returns it or why not."""
    try:
        model = load_trial_model(run_dir, study_name, trial, sample.images.shape[1])
    except CheckpointError as error:
        return str(error)
    return gradcam_sheet(model, sample, folder / f"gradcam-trial-{trial.number}.png",
                         f"{study_name} trial {trial.number}: where the model looks (Grad-CAM of its deepest encoder stage)")
