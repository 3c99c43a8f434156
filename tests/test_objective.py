"""The objective with the fake trainer: a finished trial's value, attributes and files; pruning; failures."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from search_fixtures import fast_pictures, search_cache, tiny_spec  # noqa: F401

from search.engine.notes import write_note
from search.engine.objective import Objective
from search.engine.storage import default_storage_url, open_storage
from search.engine.trial_loop import run_until
from search.study.forced import CommandSettings, with_command_line
from search.testing import FakeTrainer, InterruptingTrainer, fake_fit, scripted_dice

GOOD_LR, BAD_LR = 3e-3, 2e-5  # the fake trainer's best learning rate, and one it learns almost nothing with
TRIAL_FILES = ["config.json", "history.csv", "loss_curve.png", "predictions.png"]
CHECKPOINT_FILES = ["config.json", "model.safetensors", "training.json"]


pytestmark = pytest.mark.usefixtures("search_cache")  # POLYP_CACHE in tmp_path


def _objective(data, run_dir: Path, spec=None, trainer=fake_fit, **kwargs) -> Objective:
    return Objective(spec or tiny_spec(), data, run_dir, trainer=trainer, verbose=False, **kwargs)


def _memory_study(pruner: optuna.pruners.BasePruner | None = None) -> optuna.Study:
    return optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0),
                               pruner=pruner or optuna.pruners.NopPruner())


def test_completed_trial_value_attributes_and_files(synthetic_data, tmp_path: Path):
    run_dir = tmp_path / "run"
    storage = open_storage(default_storage_url(tmp_path))
    study = optuna.create_study(study_name="tiny", storage=storage, direction="maximize")
    study.enqueue_trial({"lr": GOOD_LR})
    study.optimize(_objective(synthetic_data, run_dir, after_trial=[write_note]), n_trials=1)

    trial = study.trials[0]
    assert trial.state == TrialState.COMPLETE
    history = trial.user_attrs["history"]
    assert len(history) == 3
    assert trial.value == max(row["val_mdice"] for row in history) == scripted_dice(replace(tiny_spec().base, lr=GOOD_LR), 3)
    assert trial.user_attrs["best_epoch"] == 3
    for key in ("config", "history", "parameters", "images_per_second", "test", "best_epoch", "overhead_seconds"):
        assert key in trial.user_attrs, key
    assert trial.user_attrs["config"]["lr"] == GOOD_LR and trial.user_attrs["config"]["arch"] == "linknet"
    assert trial.user_attrs["parameters"] > 0 and trial.user_attrs["test"]["mdice"] > 0

    folder = run_dir / "tiny" / "trial-0"
    assert trial.user_attrs["output_dir"] == str(folder.resolve())
    for name in TRIAL_FILES:
        assert (folder / name).stat().st_size > 0, name
    for name in CHECKPOINT_FILES:
        assert (folder / "checkpoint" / name).stat().st_size > 0, name
    assert (folder / "loss_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((folder / "config.json").read_text())["lr"] == GOOD_LR
    assert len((folder / "history.csv").read_text().strip().splitlines()) == 1 + 3

    artifacts = trial.user_attrs["artifacts"]
    assert set(artifacts) == set(TRIAL_FILES) | {f"checkpoint-{name}" for name in CHECKPOINT_FILES}
    metas = optuna.artifacts.get_all_artifact_meta(trial, storage=storage)
    assert {meta.artifact_id for meta in metas} == set(artifacts.values())
    assert {meta.filename for meta in metas} == set(artifacts)  # the dashboard shows these names
    stored = {path.name for path in (run_dir / "artifacts").rglob("*") if path.is_file()}
    assert set(artifacts.values()) <= stored


@pytest.mark.usefixtures("fast_pictures")
def test_forced_settings_beat_the_sampled_config(synthetic_data, tmp_path: Path):
    spec = tiny_spec(epochs=[3, 4])  # epochs is searched, and the command line forces 2
    spec = with_command_line(spec, CommandSettings(training={"epochs": 2}))
    study = _memory_study()
    study.optimize(_objective(synthetic_data, tmp_path, spec=spec), n_trials=1)
    assert study.trials[0].params["epochs"] in (3, 4), "the sampler chose a value"
    assert study.trials[0].user_attrs["config"]["epochs"] == 2
    assert len(study.trials[0].user_attrs["history"]) == 2


@pytest.mark.usefixtures("fast_pictures")
def test_bad_trials_are_pruned_and_keep_no_checkpoint(synthetic_data, tmp_path: Path):
    study = _memory_study(optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1))
    for lr in (GOOD_LR, GOOD_LR, BAD_LR, BAD_LR, GOOD_LR):
        study.enqueue_trial({"lr": lr})
    study.optimize(_objective(synthetic_data, tmp_path), n_trials=5)

    states = [trial.state for trial in study.trials]
    assert states == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.PRUNED, TrialState.PRUNED,
                      TrialState.COMPLETE]
    for trial in study.trials:
        folder = tmp_path / "tiny" / f"trial-{trial.number}"
        assert (folder / "config.json").is_file() and (folder / "history.csv").is_file()
        if trial.state == TrialState.PRUNED:
            assert not (folder / "checkpoint").exists()
            assert len(trial.user_attrs["history"]) < 3
            assert trial.user_attrs["status"] == "stopped"
            assert not any(name.startswith("checkpoint-") for name in trial.user_attrs["artifacts"])
        else:
            assert (folder / "checkpoint" / "model.safetensors").is_file()


@pytest.mark.parametrize("trainer, reason", [(FakeTrainer(fail_above_lr=0.1), "RuntimeError: scripted failure"),
                                             (FakeTrainer(diverge_above_lr=0.1), "TrialFailed: training loss became nan")],
                         ids=["raises", "diverges"])
@pytest.mark.usefixtures("fast_pictures")
def test_failing_trial_is_recorded_and_the_study_goes_on(synthetic_data, tmp_path: Path, trainer: FakeTrainer,
                                                         reason: str):
    study = _memory_study()
    for lr in (0.5, GOOD_LR, 0.9, GOOD_LR):
        study.enqueue_trial({"lr": lr})
    study.optimize(_objective(synthetic_data, tmp_path, trainer=trainer), n_trials=4, catch=(Exception,))

    states = [trial.state for trial in study.trials]
    assert states == [TrialState.FAIL, TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    for trial in study.trials:
        if trial.state == TrialState.FAIL:
            assert trial.user_attrs["fail_reason"].startswith(reason)
            assert trial.value is None
            assert not (tmp_path / "tiny" / f"trial-{trial.number}" / "checkpoint").exists()
        else:
            assert "fail_reason" not in trial.user_attrs
    assert study.best_trial.number in (1, 3)


@pytest.mark.usefixtures("fast_pictures")
def test_keyboard_interrupt_fails_the_trial_and_stops(synthetic_data, tmp_path: Path):
    study = _memory_study()
    objective = _objective(synthetic_data, tmp_path, trainer=InterruptingTrainer(on_call=1))
    with pytest.raises(KeyboardInterrupt):
        study.optimize(objective, n_trials=3, catch=(Exception,))
    assert [trial.state for trial in study.trials] == [TrialState.FAIL]


def test_a_forced_image_size_keeps_the_study_depth_that_fits_it():
    spec = tiny_spec(encoder_depth=[3, 4])
    spec = replace(spec, base=replace(spec.base, encoder_depth=4))  # [train] sets 4, the space searches 3 and 4
    forced = with_command_line(spec, CommandSettings(training={"image_size": 64}))
    assert forced.base.image_size == 64 and forced.base.encoder_depth == 4, "rows without a depth train the study's"


class _FailedByAnotherWorker:
    """A trainer whose trial another worker marks FAIL (its heartbeat was late), then gets a SIGTERM."""

    def __init__(self, storage):
        self.storage, self.calls = storage, 0

    def __call__(self, cfg, data, reporter=None, evaluate_test=True):
        self.calls += 1
        if self.calls > 1:  # a worker that lost the signal goes on training
            return fake_fit(cfg, data, reporter, evaluate_test)
        running = [t for t in self.storage.get_all_trials(self.storage.get_all_studies()[0]._study_id)
                   if t.state == TrialState.RUNNING]
        self.storage.set_trial_state_values(running[0]._trial_id, TrialState.FAIL)  # as fail_stale_trials does
        raise KeyboardInterrupt("signal SIGTERM")


@pytest.mark.usefixtures("fast_pictures")
def test_a_sigterm_stops_the_worker_even_when_the_heartbeat_already_failed_its_trial(synthetic_data, tmp_path):
    storage = open_storage(default_storage_url(tmp_path))
    study = optuna.create_study(study_name="tiny", storage=storage, direction="maximize")
    objective = _objective(synthetic_data, tmp_path / "run", trainer=_FailedByAnotherWorker(storage))

    with pytest.raises(KeyboardInterrupt):
        run_until(study, objective, target=3, storage=storage)

    assert [t.state for t in study.trials] == [TrialState.FAIL], "no further trial started after the signal"


class _HeartbeatSeen:
    """A trainer that notes whether the storage holds a heartbeat of its trial when training starts."""

    def __init__(self, database: Path):
        self.database, self.seen = database, []

    def __call__(self, cfg, data, reporter=None, evaluate_test=True):
        import sqlite3

        with sqlite3.connect(self.database) as connection:
            self.seen.append(connection.execute("select count(*) from trial_heartbeats").fetchone()[0])
        return fake_fit(cfg, data, reporter, evaluate_test)


def test_a_trial_has_a_heartbeat_before_it_trains(synthetic_data, tmp_path):
    """A worker that dies at once must leave a trial that other workers see go stale (Optuna's own heartbeat
    thread may not have beaten yet); here no heartbeat thread runs at all (ask, then call)."""
    storage = open_storage(default_storage_url(tmp_path), heartbeat_s=1)
    study = optuna.create_study(study_name="tiny", storage=storage, direction="maximize")
    trainer = _HeartbeatSeen(tmp_path / "optuna.db")
    objective = _objective(synthetic_data, tmp_path / "run", trainer=trainer)
    objective(study.ask())
    assert trainer.seen == [1]
