"""`python -m search.run` in-process: target counts, resume, interruption, user errors, and real training."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import fake_trainers
import optuna
import pytest
from optuna.trial import TrialState
from search_fixtures import (  # noqa: F401
    TINY_STUDY,
    fast_pictures,
    finished_count,
    search_cache,
    shipped_study_names,
    write_study,
)

from search.engine.storage import default_storage_url
from search.engine.trial_loop import trial_line
from search.run import main
from search.study.definition import load_study

FAKE = ["--trainer", "search.testing:fake_fit", "--data", "synthetic", "--quiet"]
TRIAL_LINE = re.compile(r"^trial \d+ (COMPLETE|PRUNED|FAIL) value ", re.MULTILINE)


pytestmark = pytest.mark.usefixtures("search_cache")  # POLYP_CACHE in tmp_path


def _tables(**space: Any) -> dict[str, dict[str, Any]]:
    """TINY_STUDY on 16 synthetic images, with `space` entries added."""
    tables = copy.deepcopy(TINY_STUDY)
    tables["run"]["synthetic_count"] = 16
    tables["space"].update(space)
    return tables


@pytest.fixture
def study_file(tmp_path: Path) -> Path:
    """The tiny study ('tiny': lr searched, three epochs, random sampler, median pruner) as a file."""
    return write_study(tmp_path, _tables())


def _tiny(study_file: Path, out: Path, n_trials: int, *extra: str) -> list[str]:
    return ["--study", str(study_file), "--run-dir", str(out), "--n-trials", str(n_trials), *FAKE, *extra]


def _study(out: Path, name: str = "tiny") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=default_storage_url(out))


def _run(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.usefixtures("fast_pictures")
def test_run_reaches_the_target_then_resumes(tmp_path: Path, study_file: Path, capsys):
    out = tmp_path / "runs"
    code, printed, _ = _run(_tiny(study_file, out, 4), capsys)
    assert code == 0
    study = _study(out)
    assert finished_count(study) == 4 and len(study.trials) == 4
    assert len(TRIAL_LINE.findall(printed)) == 4, printed
    assert re.search(r"^study tiny: \d complete, \d pruned, 0 failed", printed, re.MULTILINE)
    assert "val mDice" in printed and "test mDice" in printed
    best = study.best_trial.number
    assert str(out.resolve() / "tiny" / f"trial-{best}") in printed
    assert (out / "tiny" / "split.json").is_file()

    code, printed, _ = _run(_tiny(study_file, out, 4), capsys)
    assert code == 0
    assert len(_study(out).trials) == 4, "the same command again adds no trial"
    assert not TRIAL_LINE.findall(printed)

    code, printed, _ = _run(_tiny(study_file, out, 6), capsys)
    assert code == 0
    study = _study(out)
    assert finished_count(study) == 6 and len(study.trials) == 6
    assert [int(n) for n in re.findall(r"^trial (\d+) ", printed, re.MULTILINE)] == [4, 5]
    for trial in study.trials:
        folder = out / "tiny" / f"trial-{trial.number}"
        assert (folder / "config.json").is_file() and (folder / "history.csv").is_file()
        assert (folder / "checkpoint").is_dir() == (trial.state == TrialState.COMPLETE)


@pytest.mark.usefixtures("fast_pictures")
def test_study_given_as_a_path(tmp_path: Path, capsys):
    tables = _tables()
    tables["study"]["name"] = "from-a-file"
    path = write_study(tmp_path, tables, "anything.toml")
    out = tmp_path / "runs"
    code, printed, _ = _run(["--study", str(path), "--run-dir", str(out), "--n-trials", "1", *FAKE], capsys)
    assert code == 0
    assert finished_count(_study(out, "from-a-file")) == 1
    assert (out / "from-a-file" / "trial-0" / "checkpoint" / "model.safetensors").is_file()
    assert printed.startswith("study from-a-file: target 1 finished trials, sampler random, pruner median")


@pytest.mark.usefixtures("fast_pictures")
def test_interrupted_run_leaves_a_consistent_study_and_resumes(tmp_path: Path, study_file: Path, capsys):
    fake_trainers.ctrl_c_on_call_2.reset()
    out = tmp_path / "runs"
    argv = _tiny(study_file, out, 3)
    interrupted = [*argv, "--trainer", "fake_trainers:ctrl_c_on_call_2"]  # the last --trainer wins
    code, printed, errors = _run(interrupted, capsys)
    assert code == 130
    assert "interrupted" in errors and "run the same command again" in errors
    states = [trial.state for trial in _study(out).trials]
    assert states[1] == TrialState.FAIL and len(states) == 2
    assert TrialState.RUNNING not in states
    assert len(TRIAL_LINE.findall(printed)) == 1

    code, printed, _ = _run(argv, capsys)
    assert code == 0
    study = _study(out)
    assert finished_count(study) == 3
    assert [trial.state for trial in study.trials].count(TrialState.FAIL) == 1
    assert TrialState.RUNNING not in [trial.state for trial in study.trials]
    assert re.search(r"^study tiny: \d complete, \d pruned, 1 failed", printed, re.MULTILINE)


def test_trial_lines_say_what_happened():
    study = optuna.create_study(direction="maximize")
    lr = optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)
    study.add_trial(optuna.trial.create_trial(value=0.8, params={"lr": 1e-3}, distributions={"lr": lr},
                                              user_attrs={"config": {"arch": "linknet", "lr": 1e-3},
                                                          "overhead_seconds": 0.0}))
    study.add_trial(optuna.trial.create_trial(state=TrialState.PRUNED, params={"lr": 2e-4}, distributions={"lr": lr},
                                              intermediate_values={1: 0.2, 2: 0.25}))
    study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL, user_attrs={"fail_reason": "RuntimeError: boom"}))
    complete, pruned, failed = (trial_line(study, trial) for trial in study.trials)
    assert complete.startswith("trial 0 COMPLETE value 0.8000 | best 0.8000 (trial 0) | arch=linknet lr=1.00e-03 | ")
    assert "overhead 0.0 s" in complete
    assert pruned.startswith("trial 1 PRUNED value pruned at epoch 2 (0.2500) | best 0.8000 (trial 0) | lr=2.00e-04")
    assert failed.startswith("trial 2 FAIL value - |") and failed.endswith("reason: RuntimeError: boom")


@pytest.fixture(scope="module")
def existing_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A study file searching encoder_depth 3 and 4, and a run folder whose SQLite storage already holds its
    study with two finished trials (never changed)."""
    folder = tmp_path_factory.mktemp("existing")
    study_file = write_study(folder, _tables(encoder_depth=[3, 4]))
    out = folder / "runs"
    out.mkdir()
    study = optuna.create_study(study_name="tiny", storage=default_storage_url(out), direction="maximize")
    for value in (0.5, 0.6):
        study.add_trial(optuna.trial.create_trial(value=value, params={}, distributions={}))
    return study_file, out


def _not_a_folder(tmp_path: Path) -> str:
    (tmp_path / "a-file").write_text("not a folder")
    return str(tmp_path / "a-file" / "runs")


USER_ERRORS = {  # id: (options replacing the defaults, words the message must contain)
    "unknown-study": ({"--study": "no-such-study"}, ["unknown study 'no-such-study'", *shipped_study_names()]),
    "unsafe-study-name": ({"--study": "../demo"}, ["not allowed"]),
    "missing-study-file": ({"--study": "/nonexistent/study.toml"}, ["does not exist"]),
    "malformed-storage": ({"--storage": "notaurl"}, ["storage URL 'notaurl' is malformed"]),
    "unknown-database": ({"--storage": "nosuchdb://host/x"}, ["nosuchdb"]),
    "unreachable-postgres": ({"--storage": "postgresql://x:secret-pw@127.0.0.1:1/db"},
                             ["cannot reach the database", "127.0.0.1:1"]),
    "sqlite-folder-missing": ({"--storage": "sqlite:////nonexistent/folder/optuna.db"}, ["/nonexistent/folder"]),
    "out-under-a-file": ({"--run-dir": _not_a_folder}, ["run folder", "not writable"]),
    "image-size-not-divisible": ({"--image-size": "40"}, ["--image-size 40", "2**4"]),
    "image-size-too-small": ({"--image-size": "16"}, ["image_size"]),
    "bad-trainer": ({"--trainer": "no_such_module:fit"}, ["--trainer", "no_such_module"]),
    "missing-data-folder": ({"--data": "/nonexistent/polyps"}, ["/nonexistent/polyps"]),
}


@pytest.mark.parametrize("case", USER_ERRORS, ids=list(USER_ERRORS))
def test_user_errors_exit_2_with_a_message_and_lose_nothing(existing_study: tuple[Path, Path], tmp_path: Path,
                                                           capsys, case: str):
    study_file, run_dir = existing_study
    changes, words = USER_ERRORS[case]
    options = {"--study": str(study_file), "--run-dir": str(run_dir), "--n-trials": "4",
               "--trainer": "search.testing:fake_fit", "--data": "synthetic"}
    for flag, value in changes.items():
        options[flag] = value(tmp_path) if callable(value) else value
    argv = [part for flag, value in options.items() for part in (flag, value)] + ["--quiet"]
    code, printed, errors = _run(argv, capsys)
    assert code == 2, errors
    assert errors.startswith("error: ")
    for word in words:
        assert word in errors
    assert "secret-pw" not in errors + printed
    assert "Traceback" not in errors
    study = _study(run_dir)
    assert [trial.value for trial in study.trials] == [0.5, 0.6], "the existing study keeps its trials"


@pytest.mark.usefixtures("fast_pictures")
def test_image_size_valid_for_every_searched_depth_is_accepted(tmp_path: Path, capsys):
    tables = _tables(encoder_depth=[3, 4])
    del tables["train"]["encoder_depth"]  # the default depth 5 would need a multiple of 32
    out = tmp_path / "runs"
    argv = ["--study", str(write_study(tmp_path, tables)), "--run-dir", str(out), "--n-trials", "1", "--image-size", "48",
            *FAKE]  # 48 = 3 * 2**4: a multiple of 2**3 and 2**4, the searched depths
    code, printed, errors = _run(argv, capsys)
    assert code == 0, errors
    assert "at 48 px" in printed
    trial = _study(out, "tiny").trials[0]
    assert trial.state == TrialState.COMPLETE and trial.user_attrs["config"]["image_size"] == 48


def test_real_training_demo_end_to_end(tmp_path: Path, capsys):
    """The real trainer on the shipped demo study, as the README runs it (about 12 s with one torch thread)."""
    out = tmp_path / "runs"
    code, printed, errors = _run(["--study", "demo", "--n-trials", "2", "--epochs", "1", "--data", "synthetic",
                                  "--run-dir", str(out), "--device", "cpu", "--quiet"], capsys)
    assert code == 0, errors
    study = _study(out, "demo")
    assert finished_count(study) == 2
    assert len(TRIAL_LINE.findall(printed)) == 2
    for trial in study.trials:
        assert trial.user_attrs["config"]["epochs"] == 1
        assert trial.user_attrs["config"]["arch"] in load_study("demo").space["arch"]
        assert (out / "demo" / f"trial-{trial.number}" / "predictions.png").is_file()
