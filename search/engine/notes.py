"""A dashboard note per finished trial: metrics, key settings, and its pictures inline."""

from __future__ import annotations

import optuna
import optuna_dashboard
from optuna_dashboard.artifact import get_artifact_path

from polyp.latency import Latency
from search.engine.record import KEY_SETTINGS, artifact_ids, format_setting, set_scores, trained_config

ROBUSTNESS = ("photometric", "multi_scale", "swa_epochs")  # shown when a trial sets them


def note_markdown(trial: optuna.trial.Trial, facts: dict, image_urls: dict[str, str]) -> str:
    """The note's Markdown: a metrics table, the config's key settings, the loss curve and prediction sheet."""
    val, test = facts.get("val") or {}, facts.get("test") or {}
    rows = ["| metric | validation (best epoch) | test (reporting only) |", "|---|---|---|"]
    for name in ("mdice", "miou", "dice_pooled", "iou_pooled", "precision", "recall"):
        rows.append(f"| {name} | {val.get(name, float('nan')):.4f} | {test.get(name, float('nan')):.4f} |")
    for name in set_scores(val):  # each training set's part and each external validation set
        rows.append(f"| {name} | {val[name]:.4f} | |")
    if set_scores(val):
        rows.append(f"| objective | {val.get('objective', float('nan')):.4f} | |")
    config = trained_config(trial)
    settings = ["| setting | value |", "|---|---|"] + [
        f"| {k} | `{format_setting(config[k])}` |" for k in (*KEY_SETTINGS, "augment", "schedule", *ROBUSTNESS)
        if k in config and (k not in ROBUSTNESS or config[k] not in ("none", False, 0))]  # a table, not one long line: the dashboard does not wrap inline code
    lines = [f"## Trial {trial.number}: {facts.get('status')}", "",
             f"best epoch {facts.get('best_epoch')} of {facts.get('epochs_run')} run; "
             f"{facts.get('parameters', 0) / 1e6:.2f} M parameters; {facts.get('images_per_second', 0):.1f} img/s", "",
             *([f"latency: {Latency(**facts['latency']).describe()}", ""] if facts.get("latency") else []),
             *rows, "", *settings, ""]
    for name, title in (("predictions.png", "Predictions on fixed test images"), ("loss_curve.png", "Loss curve")):
        if name in image_urls:
            lines += [f"### {title}", f"![{title}]({image_urls[name]})", ""]
    return "\n".join(lines)


def write_note(trial: optuna.trial.Trial, facts: dict) -> None:
    """Saves the trial's note for optuna-dashboard (after its artifacts were uploaded)."""
    urls = {name: get_artifact_path(trial, artifact_id) for name, artifact_id in artifact_ids(trial).items()}
    optuna_dashboard.save_note(trial, note_markdown(trial, facts, urls))
