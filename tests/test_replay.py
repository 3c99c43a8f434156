"""CSV replay: a replay and its results, resuming, refusals, pruning, many workers (test_studies.py checks the
shipped spreadsheet)."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import fake_trainers
import optuna
import pytest
from optuna.trial import TrialState
from pg import postgres_url  # noqa: F401  (fixture: a fresh database, skipped without a server unless CI=true)
from search_fixtures import ROOT, worker_env

from search import replay
from search.engine.storage import open_storage
from search.results.replay_table import RESULT_COLUMNS
from search.study.definition import load_study
from search.study.spreadsheet import SpreadsheetError, read_spreadsheet

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)

STUDY = """
[study]
name = "csvgrid"
[run]
pruner = "median"
latency = "torch"  # no ONNX export per trial: the tests read no ONNX figure
startup_trials = 2
pruner_startup_trials = 2
warmup_epochs = 1
sample_images = 2
val_fraction = 0.25
test_fraction = 0.25
[train]
image_size = 32
epochs = 3
batch_size = 4
augment = "none"
precision = "fp32"
channels_last = false
threads = 1
device = "cpu"
[space]
arch = ["unetplusplus", "linknet"]
encoder = ["resnet18", "mobilenet_v2"]
encoder_depth = [3, 4, 5]
decoder_attention = ["none", "scse"]
lr = { low = 1e-6, high = 1e-2, log = true }
batch_size = [2, 4]
loss = ["bce+dice", "dice", "dice+focal"]
"""

GOOD_ROWS = [  # lr near 3e-3 scores well with the fake trainer, far from it badly
    {"arch": "linknet", "encoder": "resnet18", "encoder_depth": "3", "lr": "3e-3", "loss": "bce+dice", "notes": "first"},
    {"arch": "unetplusplus", "encoder": "resnet18", "encoder_depth": "4", "lr": "1e-3", "loss": "", "notes": ""},
    {"arch": "linknet", "encoder": "mobilenet_v2", "encoder_depth": "5", "lr": "2e-3", "loss": "dice", "notes": "x"},
    {"arch": "unetplusplus", "encoder": "mobilenet_v2", "encoder_depth": "3", "lr": "1e-5", "loss": "dice+focal",
     "notes": "weak"},
    {"arch": "linknet", "encoder": "resnet18", "encoder_depth": "4", "lr": "2e-6", "loss": "", "notes": "weaker"},
]


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """A cache folder per test, so decoded arrays never leak between tests."""
    monkeypatch.setenv("POLYP_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def study_file(tmp_path) -> Path:
    path = tmp_path / "csvgrid.toml"
    path.write_text(STUDY)
    return path


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def replay_args(csv_path: Path, study_file: Path, run_dir: Path, data: Path, *extra: str) -> list[str]:
    return ["--csv", str(csv_path), "--study", str(study_file), "--run-dir", str(run_dir), "--data", str(data),
            "--trainer", "search.testing:fake_fit", "--quiet", *extra]


def with_trainer(args: list[str], trainer: str) -> list[str]:
    return [trainer if arg == "search.testing:fake_fit" else arg for arg in args]


def load(run_dir: Path, name: str = "csvgrid") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{run_dir / 'optuna.db'}")


def read_results(run_dir: Path, name: str = "csvgrid") -> list[dict[str, str]]:
    with open(run_dir / name / "replay-results.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def rows_finished(study: optuna.Study) -> list[int]:
    return sorted(t.user_attrs["csv_row"] for t in study.get_trials(states=FINISHED))


def test_replay_runs_each_row_once_prunes_and_writes_results(tmp_path, study_file, synthetic_dir, capsys):
    csv_path = write_csv(tmp_path / "grid.csv", GOOD_ROWS)
    run_dir = tmp_path / "runs"
    assert replay.main(replay_args(csv_path, study_file, run_dir, synthetic_dir)) == 0  # the study's median pruner

    study = load(run_dir)
    assert rows_finished(study) == [1, 2, 3, 4, 5]
    second = study.trials[1]  # row 2 leaves the loss empty: the study's loss, not a sampled one
    assert second.user_attrs["config"]["loss"] == "bce+dice" and second.params["loss"] == "bce+dice"
    assert second.user_attrs["config"]["batch_size"] == 4 and second.params["lr"] == pytest.approx(1e-3)
    results = read_results(run_dir)
    assert [r["notes"] for r in results] == ["first", "", "x", "weak", "weaker"]  # input order
    assert list(results[0]) == [*GOOD_ROWS[0], *RESULT_COLUMNS]
    assert [r["lr"] for r in results] == [row["lr"] for row in GOOD_ROWS]  # cells as written
    # pruning is on: after two startup rows, the two weak rows stop after the one warm-up epoch
    assert [(r["state"], r["epochs_run"]) for r in results] == [("COMPLETE", "3")] * 3 + [("PRUNED", "1")] * 2
    assert float(results[0]["best_val_mdice"]) == pytest.approx(study.trials[0].value, abs=1e-4)
    assert all(float(r["minutes"]) >= 0 and r["test_mdice"] and r["test_miou"] for r in results)

    capsys.readouterr()
    assert replay.main(replay_args(csv_path, study_file, run_dir, synthetic_dir, "--pruner", "none")) == 0
    assert "enqueued rows: none" in capsys.readouterr().out
    assert len(load(run_dir).trials) == 5  # nothing ran again


def test_interrupted_replay_resumes_and_pruner_none_trains_every_row(tmp_path, study_file, synthetic_dir, capsys):
    fake_trainers.ctrl_c_on_call_3.reset()  # Ctrl-C during the third row
    csv_path = write_csv(tmp_path / "grid.csv", GOOD_ROWS)
    run_dir = tmp_path / "runs"
    args = replay_args(csv_path, study_file, run_dir, synthetic_dir, "--pruner", "none")
    interrupting = with_trainer(args, "fake_trainers:ctrl_c_on_call_3")

    assert replay.main(interrupting) == 130
    study = load(run_dir)
    assert rows_finished(study) == [1, 2]
    assert [(t.user_attrs["csv_row"], t.state) for t in study.trials if t.state == TrialState.FAIL] == [(3, TrialState.FAIL)]
    assert [r["state"] for r in read_results(run_dir)] == ["COMPLETE", "COMPLETE", "FAIL", "WAITING", "WAITING"]

    capsys.readouterr()
    assert replay.main(args) == 0
    assert "enqueued rows: 3 " in capsys.readouterr().out  # the failed row again; 4 and 5 were still waiting
    study = load(run_dir)
    assert rows_finished(study) == [1, 2, 3, 4, 5]
    assert len(study.trials) == 6
    # --pruner none: the weak rows that the median pruner stops run all three epochs too
    assert [(r["state"], r["epochs_run"]) for r in read_results(run_dir)] == [("COMPLETE", "3")] * 5


BAD_CSV = """arch,encoder,encoder_depth,decoder_attention,lr,batch_size,learning_rate,notes
linknet,resnet18,3,,1e-3,4,,fine
linknet,resnet18,4,scse,1e-3,4,,linknet has no decoder attention
unet,mit_b0,3,,1e-3,4,,mit_b0 exists only at depth 5
linknet,resnet18,4,,abc,4,,not a number
linknet,resnet18,6,,1e-3,0,,two values out of range

linknet,resnet18,3,none,0.001,4,,the first row again
"""

BAD_CSV_PROBLEMS = [
    "line 1, column 7 (learning_rate): unknown column; did you mean lr?",
    "row 2 (line 3), column 4 (decoder_attention): linknet has no decoder attention",
    "row 3 (line 4), column 3 (encoder_depth): mit_b0 exists only with depth 5, not 3",
    "row 4 (line 5), column 5 (lr): expected float, got 'abc'",
    "row 5 (line 6), column 3 (encoder_depth): 6 is outside [3, 5]",
    "row 5 (line 6), column 6 (batch_size): 0 is outside [1, 1024]",
    "row 6 (line 8): the same configuration as row 1 (line 2)",
]


def test_bad_csv_is_refused_with_every_problem_and_nothing_enqueued(tmp_path, study_file, synthetic_dir, capsys):
    csv_path = tmp_path / "bad.csv"
    csv_path.write_text(BAD_CSV)
    run_dir = tmp_path / "runs"
    run_dir.mkdir()
    optuna.create_study(study_name="csvgrid", storage=f"sqlite:///{run_dir / 'optuna.db'}")

    assert replay.main(replay_args(csv_path, study_file, run_dir, synthetic_dir)) == 2
    error = capsys.readouterr().err
    assert f"{csv_path}: {len(BAD_CSV_PROBLEMS)} problems; nothing was enqueued" in error
    for problem in BAD_CSV_PROBLEMS:
        assert f"{csv_path} {problem}" in error
    assert load(run_dir).trials == []


@pytest.mark.parametrize(("text", "problem"), [
    ("lr,image_size\n1e-3,64\n", "row 1 (line 2), column 2 (image_size): 64 is not the study's image size 32"),
    ("lr,batch_size\n1e-3,2.5\n", "row 1 (line 2), column 2 (batch_size): expected a whole number, got 2.5"),
    ("loss\nbce+huber\n", "row 1 (line 2), column 1 (loss): unknown loss 'huber'"),
    ("arch\nlinknet,extra\n", "row 1 (line 2): 2 cells but the header has 1 columns"),
    ("arch,arch\nlinknet,linknet\n", "line 1, column 2 (arch): repeats column 1"),
    ("encoder,arch\nmit_b0,linknet\n", "row 1 (line 2), column 1 (encoder): segmentation-models-pytorch's linknet "
                                       "does not support mit_b0"),
    ("arch\n", "no rows under the header"),
])
def test_each_kind_of_bad_cell_names_its_place(tmp_path, study_file, text, problem):
    path = tmp_path / "one.csv"
    path.write_text(text)
    with pytest.raises(SpreadsheetError) as caught:
        read_spreadsheet(path, load_study(str(study_file)).base)
    assert len(caught.value.problems) == 1 and problem in caught.value.problems[0]


def test_real_training_replay(tmp_path, study_file, synthetic_dir):
    rows = [{"arch": "linknet", "encoder": "resnet18", "encoder_depth": "3", "lr": "3e-3", "notes": "real"},
            {"arch": "unetplusplus", "encoder": "resnet18", "encoder_depth": "3", "lr": "1e-3", "notes": ""}]
    csv_path = write_csv(tmp_path / "grid.csv", rows)
    run_dir = tmp_path / "runs"
    args = with_trainer(replay_args(csv_path, study_file, run_dir, synthetic_dir, "--epochs", "1", "--pruner", "none"),
                        "polyp.train:fit")
    assert replay.main(args) == 0
    results = read_results(run_dir)
    assert [(r["state"], r["epochs_run"]) for r in results] == [("COMPLETE", "1")] * 2
    assert all(0.0 <= float(r["test_mdice"]) <= 1.0 for r in results)
    assert (run_dir / "csvgrid" / "trial-0" / "checkpoint" / "model.safetensors").is_file()


@pytest.mark.slow  # two worker processes of real training; test_distributed.py opens PostgreSQL from workers fast
@pytest.mark.postgres
def test_two_workers_on_postgres_run_each_row_once(tmp_path, study_file, synthetic_dir, postgres_url):  # noqa: F811
    rows = [{"arch": arch, "encoder": "resnet18", "encoder_depth": str(depth), "lr": lr, "notes": ""}
            for arch in ("linknet", "unetplusplus") for depth, lr in ((3, "3e-3"), (4, "1e-3"), (5, "2e-3"))]
    csv_path = write_csv(tmp_path / "grid.csv", rows)
    open_storage(postgres_url).engine.dispose()  # the tables exist first: this test is about rows, not start-up
    args = with_trainer(replay_args(csv_path, study_file, tmp_path / "runs", synthetic_dir, "--storage", postgres_url),
                        "fake_trainers:epochs_200ms")
    workers = [subprocess.Popen([sys.executable, "-m", "search.replay", *args], cwd=ROOT, env=worker_env(),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [worker.communicate(timeout=600)[0] for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], outputs

    study = optuna.load_study(study_name="csvgrid", storage=open_storage(postgres_url))
    assert rows_finished(study) == [1, 2, 3, 4, 5, 6], outputs
    assert all(t.state in FINISHED for t in study.trials)
    ran = [sum(line.startswith("row ") for line in output.splitlines()) for output in outputs]
    assert sum(ran) == 6
