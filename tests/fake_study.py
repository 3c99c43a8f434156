"""A small finished study made with the fake trainer, shared by the analyze, export and dashboard tests.

Every trial trains (in make-believe) LinkNet/ResNet-18 at depth 3, the model the fake trainer really
builds, so the checkpoints that complete trials keep load like real ones. It is built once per test
session in the session's temporary folder.
"""

from __future__ import annotations

import fcntl
import warnings
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from search.engine.storage import default_storage_url, open_storage
from search.run import main as run_main

STUDY = "mini"
TRIALS = 6
STUDY_TOML = f"""
[study]
name = "{STUDY}"
description = "fake-trained LinkNet/MobileNetV2 trials for the report, export and dashboard tests"

[run]
data = "synthetic"
sampler = "tpe"
pruner = "median"
startup_trials = 3
warmup_epochs = 1
sample_images = 2
synthetic_count = 20
latency = "torch"

[train]
arch = "linknet"
encoder = "mobilenet_v2"
encoder_depth = 3
image_size = 64
epochs = 3
batch_size = 4
augment = "none"
precision = "fp32"
channels_last = false
threads = 1
device = "cpu"

[space]
lr = {{ low = 5e-4, high = 1e-2, log = true }}
loss = ["bce+dice", "dice+focal"]
"""
NO_COMPLETE_TOML = """
[study]
name = "nothing-complete"
[train]
arch = "linknet"
encoder = "mobilenet_v2"
encoder_depth = 3
image_size = 64
"""


@dataclass
class FakeStudy:
    """Where the study lives and which trials ended how."""

    toml: Path
    run_dir: Path
    cache: Path
    states: dict[int, TrialState]

    def numbers(self, state: TrialState) -> list[int]:
        return [n for n, s in self.states.items() if s == state]

    @property
    def best(self) -> int:
        study = optuna.load_study(study_name=STUDY, storage=default_storage_url(self.run_dir))
        return study.best_trial.number


def _add_study_without_complete_trials(run_dir: Path) -> None:
    """A study holding one failed trial and one still running (with two reported epochs)."""
    storage = open_storage(default_storage_url(run_dir))
    study = optuna.create_study(study_name="nothing-complete", storage=storage, direction="maximize")
    failed = study.ask()
    failed.set_user_attr("fail_reason", "RuntimeError: scripted failure for the test")
    study.tell(failed, state=TrialState.FAIL)
    running = study.ask()
    running.report(0.2, step=1)
    running.report(0.3, step=2)


def build(root: Path) -> FakeStudy:
    """Builds the study under `root` once (later calls, from any test module, reuse it)."""
    root.mkdir(parents=True, exist_ok=True)
    toml, run_dir, cache = root / f"{STUDY}.toml", root / "run", root / "cache"
    with open(root / ".lock", "w") as lock, pytest.MonkeyPatch.context() as patch:
        fcntl.flock(lock, fcntl.LOCK_EX)
        patch.setenv("POLYP_CACHE", str(cache))
        if not (root / "done").exists():
            toml.write_text(STUDY_TOML)
            (root / "nothing-complete.toml").write_text(NO_COMPLETE_TOML)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # TPE's `group`
                warnings.filterwarnings("ignore", "Heartbeat of storage is supposed to be used", UserWarning)
                code = run_main(["--study", str(toml), "--n-trials", str(TRIALS), "--run-dir", str(run_dir), "--quiet",
                                 "--trainer", "search.testing:fake_fit"])
                assert code == 0
                _add_study_without_complete_trials(run_dir)
            (root / "done").write_text("ok")
    study = optuna.load_study(study_name=STUDY, storage=default_storage_url(run_dir))
    states = {t.number: t.state for t in study.get_trials()}
    assert TrialState.COMPLETE in states.values() and TrialState.PRUNED in states.values(), states
    return FakeStudy(toml, run_dir, cache, states)


def shared_study(tmp_path_factory: pytest.TempPathFactory) -> FakeStudy:
    """The session's fake study (built by whichever test module asks first)."""
    return build(tmp_path_factory.getbasetemp() / "fake-study")
