"""A dashboard note per finished trial: metrics, key settings, and its pictures inline."""

from __future__ import annotations

import optuna
import optuna_dashboard


def _artifact_url(trial: optuna.trial.Trial, artifact_id: str) -> str:
    storage = trial.study._storage  # the study's storage; ids below come from its public methods
    study_id = storage.get_study_id_from_name(trial.study.study_name)
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
    return f"/artifacts/{study_id}/{trial_id}/{artifact_id}"


def note_markdown(trial: optuna.trial.Trial, facts: dict, image_urls: dict[str, str]) -> str:
    """The note's Markdown: a metrics table, the config's key settings, the loss curve and prediction sheet."""
    val, test = facts.get("val") or {}, facts.get("test") or {}
    rows = ["| metric | validation (best epoch) | test (reporting only) |", "|---|---|---|"]
    for name in ("mdice", "miou", "dice_pooled", "iou_pooled", "precision", "recall"):
        rows.append(f"| {name} | {val.get(name, float('nan')):.4f} | {test.get(name, float('nan')):.4f} |")
    config = trial.user_attrs.get("config", {})
    settings = ["| setting | value |", "|---|---|"] + [
        f"| {k} | `{config[k]:.3g}` |" if isinstance(config[k], float) else f"| {k} | `{config[k]}` |"
        for k in ("arch", "encoder", "encoder_depth", "lr", "batch_size", "optimizer", "loss", "augment", "schedule")
        if k in config]  # a table, not one long line: the dashboard does not wrap inline code
    lines = [f"## Trial {trial.number}: {facts.get('status')}", "",
             f"best epoch {facts.get('best_epoch')} of {facts.get('epochs_run')} run; "
             f"{facts.get('parameters', 0) / 1e6:.2f} M parameters; {facts.get('images_per_second', 0):.1f} img/s", "",
             *rows, "", *settings, ""]
    for name, title in (("predictions.png", "Predictions on fixed test images"), ("loss_curve.png", "Loss curve")):
        if name in image_urls:
            lines += [f"### {title}", f"![{title}]({image_urls[name]})", ""]
    return "\n".join(lines)


def write_note(trial: optuna.trial.Trial, facts: dict) -> None:
    """Saves the trial's note for optuna-dashboard (after its artifacts were uploaded)."""
    artifacts = trial.user_attrs.get("artifacts", {})
    urls = {name: _artifact_url(trial, artifact_id) for name, artifact_id in artifacts.items()}
    optuna_dashboard.save_note(trial, note_markdown(trial, facts, urls))
