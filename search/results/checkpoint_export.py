"""A trial's model as a checkpoint folder that `polyp.predict` and `segmentation_models_pytorch.from_pretrained`
load: config.json, model.safetensors, training.json (the TrainConfig, validation and test metrics, study,
trial, preprocessing), and model.onnx checked against PyTorch. A trial that kept no checkpoint (pruned or
failed) is refused unless its config is trained again (`retrain`).
"""

from __future__ import annotations

import json
import warnings
from datetime import datetime, timezone
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState
from torch import nn

from polyp.checkpoint import CONFIG_FILE, TRAINING_FILE, WEIGHTS_FILE, load_checkpoint, save_checkpoint
from polyp.config import TrainConfig, parse_config
from polyp.io import write_json
from polyp.latency import Latency, measure_latency
from polyp.models import input_normalization
from polyp.models.ensemble import MEMBER_PREFIX
from polyp.onnx_export import ONNX_FILE
from polyp.train import fit
from search.engine.artifacts import checkpoint_folder
from search.engine.outputs import trial_dir
from search.engine.record import TrialRecord, trial_value
from search.engine.session import Session, load_data
from search.engine.storage import safe_url
from search.results.split_scores import score_test_split
from search.study.errors import CommandLineError, StudyError
from search.study.space import suggest

ONNX_TOLERANCE = 1e-3  # largest |onnxruntime - PyTorch| logit difference accepted
EXPORT_FILES = {CONFIG_FILE, WEIGHTS_FILE, TRAINING_FILE, ONNX_FILE}


class NoCheckpoint(StudyError):
    """The trial to export kept no checkpoint and --retrain was not given."""


def fastest_enough(study: optuna.Study, limit: float) -> FrozenTrial:
    """The complete trial with the highest value whose model runs within `limit` ms per frame (its faster
    runtime, as the trial was timed); a StudyError that gives the fastest one when none does."""
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    if not complete:
        pick_trial(study, None)  # says what the study holds instead
    timed = [(t, ms) for t in complete if (ms := TrialRecord.of(t).fastest_ms) is not None]
    within = [t for t, ms in timed if ms <= limit]
    if within:
        return max(within, key=trial_value)
    if not timed:
        raise StudyError(f"--max-latency-ms: none of the {len(complete)} complete trials of study {study.study_name} "
                         "was timed (studies run before latency was measured, or with latency = \"none\")")
    fastest, ms = min(timed, key=lambda pair: pair[1])
    raise StudyError(f"--max-latency-ms {limit:g}: no complete trial of study {study.study_name} runs within it; the "
                     f"fastest is trial {fastest.number} at {ms:.1f} ms per frame")


def pick_trial(study: optuna.Study, number: int | None) -> FrozenTrial:
    """Trial `number`, or the complete trial with the highest value."""
    trials = study.get_trials(deepcopy=False)
    if number is None:
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        if not complete:
            states = ", ".join(f"{sum(t.state == s for t in trials)} {s.name.lower()}" for s in TrialState)
            raise StudyError(f"study {study.study_name} has no complete trial to export ({states}); "
                             f"name one with --trial N (and --retrain if it kept no checkpoint)")
        return max(complete, key=trial_value)
    for trial in trials:
        if trial.number == number:
            return trial
    raise StudyError(f"study {study.study_name} has no trial {number} (it has {len(trials)} trials, 0..{len(trials) - 1})")


def _export_file(path: Path) -> bool:
    """Whether `path` is one of the files (or ensemble members) an export writes."""
    return path.name in EXPORT_FILES or (path.is_dir() and path.name.startswith(MEMBER_PREFIX))


def check_destination(out: Path, run_dir: Path) -> None:
    """Refuses a destination that is not new, empty, or an earlier export (it would be replaced whole)."""
    if out.resolve() == run_dir.resolve() or out.resolve() in run_dir.resolve().parents:
        raise CommandLineError(f"--out {out}: would replace the run folder {run_dir}; choose a new folder")
    if out.exists():
        if not out.is_dir():
            raise CommandLineError(f"--out {out}: is a file; choose a folder")
        others = sorted(p.name for p in out.iterdir() if not _export_file(p))
        if others:
            raise CommandLineError(f"--out {out}: exists and holds other files ({', '.join(others[:3])}); "
                             f"exporting replaces the folder whole, so choose a new or empty one")


def trial_config(session: Session, trial: FrozenTrial) -> TrainConfig:
    """The config the trial trained: stored by the objective, else rebuilt from its params."""
    stored = TrialRecord.of(trial).config
    if stored:
        return parse_config(stored)
    return suggest(optuna.trial.FixedTrial(trial.params), session.spec)


def retrain(session: Session, trial: FrozenTrial, overrides: dict) -> tuple[nn.Module, TrainConfig, dict]:
    """Trains the trial's config again on the study's data and split; returns model, config, metrics."""
    cfg = parse_config(overrides, base=trial_config(session, trial))
    print(f"retraining trial {trial.number}'s config for {cfg.epochs} epochs ({cfg.arch}/{cfg.encoder}, {cfg.image_size} px)",
          flush=True)
    result = fit(cfg, load_data(session))
    if result.status == "diverged" or not result.best_epoch:
        raise StudyError(f"retraining trial {trial.number} produced no model: {result.reason or 'no epoch finished'}")
    return result.model, cfg, {"val": result.best_val, "test": result.test}


def kept_model(session: Session, trial: FrozenTrial) -> tuple[nn.Module, TrainConfig, dict]:
    """The trial's own checkpoint (its folder here, else its artifacts); NoCheckpoint if it kept none."""
    with checkpoint_folder(session.artifacts, session.run_dir, session.spec.name, trial) as folder:
        if folder is None:
            local = trial_dir(session.run_dir, session.spec.name, trial.number) / "checkpoint"
            raise NoCheckpoint(f"trial {trial.number} of study {session.spec.name} ({trial.state.name.lower()}) kept "
                               f"no checkpoint (only complete trials keep one; looked in {local} and the artifact "
                               f"store); add --retrain to train its config again and export that")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # smp warns about mismatched keys before load_checkpoint explains them
            model, info = load_checkpoint(folder)
    record = TrialRecord.of(trial)
    metrics = info.extra.get("metrics") or {"val": record.val, "test": record.test}
    return model, info.config, metrics


def export_trial(session: Session, trial: FrozenTrial, out: Path, retrain_missing: bool,
                 overrides: dict) -> tuple[nn.Module, TrainConfig, dict]:
    """Writes the trial's model into `out` (config.json, model.safetensors, training.json)."""
    try:
        model, cfg, metrics = kept_model(session, trial)
        source = f"trial {trial.number}'s checkpoint"
    except NoCheckpoint:
        if not retrain_missing:
            raise
        model, cfg, metrics = retrain(session, trial, overrides)
        source = "retrained by search.export --retrain"
    metrics = {**metrics, "test_own_size": score_test_split(session, model, cfg.image_size,
                                                                     input_normalization(cfg))}
    facts = {"metrics": metrics, "study": session.spec.name, "trial": trial.number, "trial_state": trial.state.name,
             "trial_value": trial_value(trial), "storage": safe_url(session.storage_url), "source": source,
             "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    save_checkpoint(model, cfg, out, facts)
    return model.eval(), cfg, facts


def record_export_latency(model: nn.Module, out: Path, image_size: int) -> Latency:
    """Times the exported model per frame on this machine's CPU with every core (PyTorch, and ONNX Runtime on
    `out/model.onnx` where it was written) and adds the figures to `out/training.json` as "latency"."""
    onnx = out / ONNX_FILE
    latency = measure_latency(model, image_size, "cpu", 0, onnx=onnx.is_file(), onnx_path=onnx)
    path = out / TRAINING_FILE
    write_json(path, {**json.loads(path.read_text()), "latency": latency.to_dict()})
    return latency


def write_onnx(model: nn.Module, out: Path, image_size: int) -> float:
    """Writes `out/model.onnx` and returns the largest difference from PyTorch on a sample input."""
    from polyp.onnx_export import export_onnx, onnx_max_difference

    export_onnx(model, image_size, out / ONNX_FILE)
    return onnx_max_difference(model, out / ONNX_FILE, image_size)
