"""Pictures of the top trials' models for the report: a prediction sheet per trial on the same fixed test
images, and a Grad-CAM sheet of the best one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from optuna.trial import FrozenTrial
from torch import nn

from polyp.checkpoint import CheckpointError, CheckpointInfo, load_checkpoint
from polyp.data import ImageSet
from polyp.plots import gradcam_sheet, predict_masks, prediction_sheet
from search.engine.artifacts import checkpoint_folder
from search.engine.record import trial_value


def load_trial_model(files: TrialFiles, trial: FrozenTrial, image_size: int) -> tuple[nn.Module, CheckpointInfo]:
    """The best-epoch model a trial kept (its `trial-N/checkpoint/` here, else its artifacts), and its training.json.

    Raises:
        CheckpointError: no checkpoint (pruned and failed trials keep none), or one that does not load or
            was trained at another image size than the report's images.
    """
    with checkpoint_folder(files.artifacts, files.run_dir, files.study_name, trial) as folder:
        if folder is None:
            raise CheckpointError(f"trial {trial.number} ({trial.state.name.lower()}) kept no checkpoint")
        model, info = load_checkpoint(folder)
    if info.image_size != image_size:
        raise CheckpointError(f"trial {trial.number}: trained at {info.image_size} px, the study's images are "
                              f"{image_size} px")
    return model, info


@dataclass(frozen=True)
class TrialFiles:
    """Where a study's trials keep their files: the run folder on this machine and the artifact store."""

    run_dir: Path
    study_name: str
    artifacts: object


def prediction_sheets(files: TrialFiles, trials: list[FrozenTrial], sample: ImageSet,
                      folder: Path) -> dict[int, Path | str]:
    """Writes `predictions-trial-N.png` for each trial, all on the same `sample` images.

    Returns:
        trial number -> the sheet written, or why there is none.
    """
    size = sample.images.shape[1]
    sheets: dict[int, Path | str] = {}
    for trial in trials:
        try:
            model, info = load_trial_model(files, trial, size)
        except CheckpointError as error:
            sheets[trial.number] = str(error)
            continue
        title = f"{files.study_name} trial {trial.number} (val mDice {trial_value(trial):.4f})"
        sheets[trial.number] = prediction_sheet(sample, predict_masks(model, sample, (info.mean, info.std)), folder / f"predictions-trial-{trial.number}.png",
                                                title)
    return sheets


def gradcam_for(files: TrialFiles, trial: FrozenTrial, sample: ImageSet, folder: Path) -> Path | str:
    """Writes `gradcam-trial-N.png` (image, prediction, Grad-CAM) for one trial; returns it or why not."""
    try:
        model, info = load_trial_model(files, trial, sample.images.shape[1])
    except CheckpointError as error:
        return str(error)
    return gradcam_sheet(model, sample, folder / f"gradcam-trial-{trial.number}.png",
                         f"{files.study_name} trial {trial.number}: where the model looks (Grad-CAM of its deepest encoder stage)",
                         (info.mean, info.std))
