"""`--workers N`: several worker processes from one command, sharing one SQLite study on this machine."""

from __future__ import annotations

import argparse
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from search_fixtures import TINY_STUDY, finished_count, search_cache, worker_env, write_study  # noqa: F401

from polyp.config import TrainConfig
from search.cli import CommandLineError
from search.engine.record import TrialRecord
from search.engine.storage import default_storage_url, open_storage
from search.engine.workers import plan_workers
from search.run import main as run_main

pytestmark = pytest.mark.usefixtures("search_cache")


def _args(**given) -> tuple[int, str | None, str | None]:
    """plan_workers' (workers, devices, device) with these given."""
    values = {"workers": 2, "devices": None, "device": None, **given}
    return values["workers"], values["devices"], values["device"]


STUDY_DEFAULTS = TrainConfig()  # threads 0 and loader_workers -1: the study leaves both to the workers


def test_cpu_workers_split_the_cores_and_keep_the_rest_of_the_command_line():
    plan = plan_workers(*_args(workers=2), ["--study", "demo", "--workers", "2", "--n-trials=4"], STUDY_DEFAULTS,
                        cpu_count=8)
    assert plan.argv == [["--study", "demo", "--n-trials=4", "--workers", "1", "--threads", "4",
                          "--loader-workers", "0"]] * 2
    study_says = replace(STUDY_DEFAULTS, threads=1, loader_workers=1)  # [train] or the command line set them
    plan = plan_workers(*_args(workers=3, device="cpu"), ["--workers=3"], study_says, cpu_count=8)
    assert plan.argv == [["--workers", "1"]] * 3


def test_an_abbreviated_workers_flag_does_not_start_workers_in_the_workers():
    plan = plan_workers(*_args(workers=2), ["--worker", "2", "--study", "demo"], STUDY_DEFAULTS, cpu_count=2)
    assert plan.argv[0][:6] == ["--worker", "2", "--study", "demo", "--workers", "1"]
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int)
    assert parser.parse_known_args(plan.argv[0])[0].workers == 1, "argparse takes the last value"


def test_cuda_workers_take_the_listed_devices_in_turn(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    plan = plan_workers(*_args(workers=3, devices="cuda:0,cuda:1"), ["--devices", "cuda:0,cuda:1", "--workers", "3"],
                        STUDY_DEFAULTS, cpu_count=16)
    assert [env["CUDA_VISIBLE_DEVICES"] for env in plan.environments] == ["0", "1", "0"]
    assert plan.argv == [["--workers", "1", "--device", "cuda", "--loader-workers", "5"]] * 3


def test_cuda_devices_count_the_gpus_a_scheduler_gave_this_process(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    plan = plan_workers(*_args(workers=2, devices="cuda:0,cuda:1"), [], STUDY_DEFAULTS, cpu_count=8)
    assert [env["CUDA_VISIBLE_DEVICES"] for env in plan.environments] == ["2", "3"]
    with pytest.raises(CommandLineError, match="sees 2 GPU"):
        plan_workers(*_args(devices="cuda:2"), [], STUDY_DEFAULTS)


@pytest.mark.parametrize("given, words", [({"workers": 0}, "--workers 0"),
                                          ({"devices": "gpu0"}, "--devices gpu0: gpu0 is not cuda:N"),
                                          ({"devices": "cuda:0", "device": "cpu"}, "with --device cpu")])
def test_impossible_worker_settings_are_refused(given, words):
    with pytest.raises(CommandLineError, match=words):
        plan_workers(*_args(**given), [], STUDY_DEFAULTS)


def _study(out: Path) -> optuna.Study:
    return optuna.load_study(study_name="tiny", storage=default_storage_url(out))


def _argv(tmp_path: Path, trainer: str, trials: int) -> list[str]:
    tables = {**TINY_STUDY, "run": {**TINY_STUDY["run"], "synthetic_count": 16}}
    return ["--study", str(write_study(tmp_path, tables)), "--run-dir", str(tmp_path / "runs"), "--n-trials", str(trials),
            "--data", "synthetic", "--quiet", "--workers", "2", "--heartbeat", "1", "--trainer", trainer]


def test_two_workers_share_the_study_and_their_lines_are_prefixed(tmp_path: Path, capsys):
    assert run_main(_argv(tmp_path, "search.testing:fake_fit", 4)) == 0
    printed = capsys.readouterr().out
    study = _study(tmp_path / "runs")
    assert finished_count(study) == 4 and len(study.trials) == 4
    assert len({TrialRecord.of(t).worker for t in study.trials}) == 2, "both workers ran trials"
    assert re.search(r"^\[worker 1\] trial \d+ ", printed, re.MULTILINE)
    assert re.search(r"^\[worker 2\] trial \d+ ", printed, re.MULTILINE)
    assert re.search(r"^started 2 workers: pids \d+, \d+$", printed, re.MULTILINE)


def test_a_worker_that_dies_is_reported_and_its_trial_retried(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setenv("PYTHONPATH", worker_env()["PYTHONPATH"])
    code = run_main(_argv(tmp_path, "fake_trainers:exit_once", 4))
    for marker in Path(tempfile.gettempdir()).glob("polyp-exit-once-*"):
        marker.unlink()
    captured = capsys.readouterr()
    assert code == 3, "the failed worker's own exit status"
    assert re.search(r"worker [12] \(pid \d+\) ended badly: exit status 3", captured.err)
    study = _study(tmp_path / "runs")
    assert finished_count(study) == 4
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    retries = [TrialRecord.of(t).retry_of for t in study.trials]
    assert len(failed) == 1 and failed[0].number in retries, "the dead worker's trial ran again"


def _wait_for_training(study_dir: Path, deadline_s: float = 120, name: str = "tiny") -> None:
    """Waits until a trial of the study is RUNNING and has reported an epoch (it is inside the trainer)."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if (study_dir / "optuna.db").is_file():
            try:  # open_storage takes the creation lock the workers take: no race creating the tables
                trials = optuna.load_study(study_name=name, storage=open_storage(default_storage_url(study_dir))
                                           ).get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            except KeyError:  # the study is not created yet
                trials = []
            if any(t.intermediate_values for t in trials):
                return
        time.sleep(0.1)
    raise AssertionError(f"no trial was training within {deadline_s} s")


def test_sigterm_to_the_command_stops_every_worker_cleanly(tmp_path: Path):
    argv = _argv(tmp_path, "fake_trainers:epochs_1500ms", 20)
    command = subprocess.Popen([sys.executable, "-m", "search.run", *argv], env=worker_env(), text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        _wait_for_training(tmp_path / "runs")
    except AssertionError:
        command.kill()
        raise
    command.send_signal(signal.SIGTERM)
    output = command.communicate(timeout=120)[0]
    assert command.returncode == 130, output
    study = _study(tmp_path / "runs")
    assert not [t for t in study.trials if t.state == TrialState.RUNNING], "every running trial was marked"
    interrupted = [t for t in study.trials if "interrupted" in TrialRecord.of(t).fail_reason]
    assert 1 <= len(interrupted) <= 2 and finished_count(study) < 20


@pytest.mark.slow
def test_sigterm_to_the_demo_stops_its_search_and_marks_the_running_trial(tmp_path: Path):
    demo = subprocess.Popen([sys.executable, "-m", "search.demo", "--out", str(tmp_path / "demo"), "--n-trials", "40"],
                            env={**worker_env(), "POLYP_CACHE": str(tmp_path / "cache")}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        _wait_for_training(tmp_path / "demo", deadline_s=300, name="demo")
    except AssertionError:
        demo.kill()
        raise
    demo.send_signal(signal.SIGTERM)
    output = demo.communicate(timeout=120)[0]

    assert demo.returncode == 130, output
    trials = optuna.load_study(study_name="demo", storage=default_storage_url(tmp_path / "demo")).trials
    assert not [t for t in trials if t.state == TrialState.RUNNING], "the running trial was marked"
    assert any("interrupted" in TrialRecord.of(t).fail_reason for t in trials)
