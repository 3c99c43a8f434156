"""What a trial leaves behind: its folder (config, history, loss curve, prediction sheet, checkpoint)
and the same files as Optuna artifacts, so optuna-dashboard shows them on the trial's page."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
from optuna.artifacts import upload_artifact

from polyp.checkpoint import save_checkpoint
from polyp.config import TrainConfig
from polyp.data import ImageSet
from polyp.io import write_json
from polyp.models import input_normalization
from polyp.plots import loss_curve, predict_masks, prediction_sheet
from polyp.train.history import write_history
from polyp.train.loop import TrainResult
from search.study.definition import validate_study_name

if TYPE_CHECKING:
    from optuna.artifacts._protocol import ArtifactStore  # the protocol Optuna's stores follow


def study_dir(run_dir: Path, study_name: str) -> Path:
    """`<run folder>/<study>`; the name was validated so it never escapes the run folder."""
    folder = (run_dir / validate_study_name(study_name)).resolve()
    if run_dir.resolve() not in folder.parents:
        raise ValueError(f"study folder {folder} is outside the run folder {run_dir}")
    return folder


def trial_dir(run_dir: Path, study_name: str, number: int) -> Path:
    """`<run folder>/<study>/trial-<number>`."""
    return study_dir(run_dir, study_name) / f"trial-{number}"


def write_trial_files(folder: Path, cfg: TrainConfig, result: TrainResult, sample: ImageSet, title: str,
                      keep_checkpoint: bool, facts: dict) -> list[Path]:
    """Writes config.json, history.csv, loss_curve.png, predictions.png (and checkpoint/) into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "config.json", cfg.to_dict())
    write_history(folder / "history.csv", result.history)
    files = [folder / "config.json", folder / "history.csv"]
    if result.history:
        files.append(loss_curve(result.history, folder / "loss_curve.png", title))
    if len(sample) and result.best_epoch:
        masks = predict_masks(result.model.cpu(), sample, input_normalization(cfg))
        files.append(prediction_sheet(sample, masks, folder / "predictions.png", f"{title} - best epoch {result.best_epoch}"))
    if keep_checkpoint and result.best_epoch:
        checkpoint = save_checkpoint(result.model, cfg, folder / "checkpoint", facts)
        files += [checkpoint / "config.json", checkpoint / "model.safetensors", checkpoint / "training.json"]
    return files


def upload_files(store: ArtifactStore, trial: optuna.trial.Trial, files: list[Path]) -> dict[str, str]:
    """Uploads `files` as artifacts of `trial`; returns artifact name -> artifact id.

    Checkpoint files are named `checkpoint-<name>` (Optuna names an artifact after its file, and the trial's
    config.json and the checkpoint's would otherwise look the same on the dashboard).
    """
    ids = {}
    with tempfile.TemporaryDirectory(prefix=".upload-", dir=files[0].parent if files else None) as staging:
        for path in files:
            name = path.name if path.parent.name != "checkpoint" else f"checkpoint-{path.name}"
            source = path
            if name != path.name:
                source = Path(staging) / name
                try:
                    os.link(path, source)  # no copy of the weights where the file system allows it
                except OSError:
                    shutil.copyfile(path, source)
            ids[name] = upload_artifact(artifact_store=store, file_path=str(source), study_or_trial=trial)
    return ids
