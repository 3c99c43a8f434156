"""Fixtures and helpers shared by the search-layer tests (import them from a test module).

The search tests run fake trainers (`search.testing`, and the named ones in tests/fake_trainers.py), never
real training, except the few end-to-end runs named `test_real_training_*`. They write their own study
files and spreadsheets into tmp_path; only tests of the shipped files read studies/ and hyperparameters.csv.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import optuna
import pytest

import search.engine.outputs
from search.study.definition import STUDIES_DIR, StudySpec, parse_study

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent

TINY_STUDY: dict[str, Any] = {  # LinkNet/MobileNetV2 (depth 3: small checkpoints) at 32 px: only lr is searched
    "study": {"name": "tiny", "description": "search-layer tests"},
    "run": {"sampler": "random", "pruner": "median", "startup_trials": 2, "pruner_startup_trials": 2,
            "warmup_epochs": 1, "sample_images": 2, "latency": "torch"},
    "train": {"arch": "linknet", "encoder": "mobilenet_v2", "encoder_depth": 3, "encoder_weights": "none",
              "image_size": 32, "epochs": 3, "batch_size": 4},
    "space": {"lr": {"low": 1e-5, "high": 1.0, "log": True}},
}


def toml_value(value: Any) -> str:
    """A TOML literal for a string, number, bool, list or inline table."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML literal for {value!r}")


def write_study(folder: Path, tables: dict[str, dict[str, Any]], file_name: str = "study.toml") -> Path:
    """Writes `tables` ({"run": {...}, "space": {...}}) as a study file and returns its path."""
    lines = []
    for table, entries in tables.items():
        lines.append(f"[{table}]")
        lines += [f"{key} = {toml_value(value)}" for key, value in entries.items()]
        lines.append("")
    path = folder / file_name
    path.write_text("\n".join(lines))
    return path


def tiny_spec(**space: Any) -> StudySpec:
    """TINY_STUDY as a StudySpec, with `space` entries added or replaced."""
    data = {table: dict(entries) for table, entries in TINY_STUDY.items()}
    data["space"].update(space)
    return parse_study(data, "tiny", "tiny.toml: ")


def shipped_study_names() -> list[str]:
    """The names of the studies in studies/, which an unknown study's error message lists."""
    return sorted(path.stem for path in STUDIES_DIR.glob("*.toml"))


def worker_env() -> dict[str, str]:
    """The environment of a worker process: the repository and tests/ (for `fake_trainers`) on PYTHONPATH."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS)])}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for servers the tests start)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def finished_count(study: optuna.Study) -> int:
    """Complete plus pruned trials."""
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return len(study.get_trials(deepcopy=False, states=states))


@pytest.fixture
def search_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Points POLYP_CACHE at a folder of this test and quietens Optuna's per-trial logging."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("POLYP_CACHE", str(cache))
    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    yield cache
    optuna.logging.set_verbosity(previous)


def _empty_png(path: str | Path) -> Path:
    path = Path(path)
    path.write_bytes(b"\x89PNG\r\n\x1a\n")
    return path


def _stub_loss_curve(history: list[dict], path: str | Path, title: str = "") -> Path:
    return _empty_png(path)


def _stub_prediction_sheet(images: Any, predictions: Any, path: str | Path, title: str = "") -> Path:
    return _empty_png(path)


@pytest.fixture
def fast_pictures(monkeypatch: pytest.MonkeyPatch) -> None:
    """Replaces the loss curve and prediction sheet with empty PNG files (matplotlib costs seconds a trial).

    The files still exist under their names, so every output path is exercised; test_objective.py checks
    the real pictures once.
    """
    monkeypatch.setattr(search.engine.outputs, "loss_curve", _stub_loss_curve)
    monkeypatch.setattr(search.engine.outputs, "prediction_sheet", _stub_prediction_sheet)
