"""Several checkpoints as one model that averages their probabilities.

An ensemble folder holds one checkpoint folder per member (`member-0/`, `member-1/`, ...: each a checkpoint of
its own, loadable alone) and a `training.json` with the first member's `train_config` and `preprocessing`,
and under `ensemble` the members (their folders and whatever facts they came with, e.g. metrics and seeds).
`polyp.checkpoint.load_checkpoint` returns an `Ensemble` for such a folder, so `polyp.predict`,
`polyp.evaluate`, `polyp.serve` and the ONNX export (one graph) take it like any checkpoint. Every member
must expect the same input: the same image size, mean and std.

Example:
    >>> from polyp.ensemble import save_ensemble
    >>> save_ensemble(["runs/a/checkpoint", "runs/b/checkpoint"], "exported/ensemble")  # doctest: +SKIP
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from polyp.io import write_json

ENSEMBLE_KEY = "ensemble"  # the training.json key that makes a folder an ensemble
MEMBER_PREFIX = "member-"
PROBABILITY_EPS = 1e-6  # the mean probability is clamped to [eps, 1 - eps] before it is turned back into a logit


class Ensemble(nn.Module):
    """The members' mean probability, returned as a logit so that it replaces a single model anywhere."""

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        probabilities = torch.stack([torch.sigmoid(member(images).float()) for member in self.members]).mean(0)
        return torch.logit(probabilities, eps=PROBABILITY_EPS)


def save_ensemble(members: list[str | Path], folder: str | Path, member_facts: list[dict] | None = None,
                  extra: dict[str, Any] | None = None) -> Path:
    """Copies checkpoint folders into one ensemble folder, atomically (a temporary folder renamed at the end).

    Args:
        members: checkpoint folders (each one polyp.checkpoint.load_checkpoint loads).
        folder: the ensemble folder; an existing one is replaced only once the new one is complete.
        member_facts: per member, facts listed beside it in training.json (metrics, trial, seed, ...).
        extra: more facts for the ensemble's training.json (its own metrics, study, ...).

    Raises:
        CheckpointError: fewer than 2 members, a member that does not load, or members that expect
            different input (image size, mean, std).
    """
    from polyp.checkpoint import TRAINING_FILE, CheckpointError, read_info, replace_folder

    if len(members) < 2:
        raise CheckpointError(f"an ensemble needs at least 2 members, got {len(members)}")
    infos = [read_info(member) for member in members]
    inputs = {(info.image_size, tuple(info.mean), tuple(info.std)) for info in infos}
    if len(inputs) > 1:
        raise CheckpointError(f"ensemble members expect different input (image size, mean, std): {sorted(inputs)}")
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        listed = []
        for index, (member, facts) in enumerate(zip(members, member_facts or [{}] * len(members), strict=True)):
            shutil.copytree(member, staging / f"{MEMBER_PREFIX}{index}")
            listed.append({"folder": f"{MEMBER_PREFIX}{index}", **facts})
        first = infos[0]
        write_json(staging / TRAINING_FILE, {
            "train_config": first.config.to_dict(),
            "preprocessing": {"image_size": first.image_size, "mean": list(first.mean), "std": list(first.std),
                              "resize": "square, INTER_AREA", "input": "RGB uint8 / 255, then (x - mean) / std"},
            ENSEMBLE_KEY: {"members": listed, "how": "the mean of the members' probabilities (sigmoid of their "
                           "logits); the model returns its logit, so a threshold of 0.5 applies as to one model"},
            **(extra or {})})
        replace_folder(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def load_ensemble(folder: Path, data: dict) -> tuple[Ensemble, Any]:
    """The Ensemble of an ensemble folder whose training.json is `data`, and its CheckpointInfo."""
    from polyp.checkpoint import CheckpointError, load_checkpoint, read_info

    listed = data[ENSEMBLE_KEY].get("members") if isinstance(data[ENSEMBLE_KEY], dict) else None
    if not listed or not all(isinstance(m, dict) and isinstance(m.get("folder"), str) for m in listed):
        raise CheckpointError(f"{folder}/training.json: '{ENSEMBLE_KEY}' lists no members")
    models, infos = [], []
    for member in listed:
        path = (folder / member["folder"]).resolve()
        if folder.resolve() not in path.parents:
            raise CheckpointError(f"{folder}: member folder {member['folder']!r} lies outside the ensemble folder")
        model, info = load_checkpoint(path)
        models.append(model)
        infos.append(info)
    info = read_info(folder)
    for member, member_info in zip(listed, infos, strict=True):
        if (member_info.image_size, member_info.mean, member_info.std) != (info.image_size, info.mean, info.std):
            raise CheckpointError(f"{folder}/{member['folder']}: expects other input than the ensemble "
                                  f"({member_info.image_size} px, mean {member_info.mean})")
    return Ensemble(models).eval(), info


__all__ = ["ENSEMBLE_KEY", "Ensemble", "load_ensemble", "save_ensemble"]
