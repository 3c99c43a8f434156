"""`python -m search.analyze`: the report of a finished study, and of one with no complete trial."""

from __future__ import annotations

import csv
import re
from contextlib import redirect_stdout

import pytest
from fake_study import FakeStudy, shared_study
from optuna.trial import TrialState

from search.analyze import main

OPTUNA_PLOTS = ("optimization_history.html", "param_importances.html", "parallel_coordinate.html", "slice.html")


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> FakeStudy:
    return shared_study(tmp_path_factory)


@pytest.fixture(scope="module")
def report(study, tmp_path_factory):
    """Runs the analysis once with Grad-CAM; yields the report folder and what the command printed."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("POLYP_CACHE", str(study.cache))
        capture = tmp_path_factory.mktemp("analyze-output") / "stdout.txt"
        with capture.open("w") as handle, redirect_stdout(handle):
            code = main(["--study", str(study.toml), "--run-dir", str(study.run_dir), "--top", "2", "--gradcam"])
    return {"code": code, "folder": study.run_dir / "mini" / "report", "stdout": capture.read_text()}


def test_the_report_holds_every_file_and_the_index_links_them(report, study):
    assert report["code"] == 0
    folder = report["folder"]
    best, second = sorted(study.numbers(TrialState.COMPLETE), key=lambda n: -_value(folder, n))[:2]
    expected = ["trials.csv", "loss_curves.html", "loss_curves.png", "speed_front.html", "speed_front.png", *OPTUNA_PLOTS,
                f"predictions-trial-{best}.png", f"predictions-trial-{second}.png", f"gradcam-trial-{best}.png"]
    index = (folder / "index.html").read_text()
    for name in expected:
        assert (folder / name).stat().st_size > 200, name
        assert f'href="{name}"' in index, name
    assert (folder / "plotly.min.js").is_file()  # the HTML plots work offline
    assert "Top 2 trials" in index and f"../trial-{best}/" in index
    assert "<th>ms/frame PyTorch</th>" in index and "Accuracy against speed" in index  # the fake study's trials were timed
    assert f"report: {folder / 'index.html'}" in report["stdout"]
    assert f"Trial {best} on the test split, as polyp.evaluate scores it" in index
    assert re.search(rf"trial {best} on the test split at the images' own sizes \(\d+ images\): mDice 0\.\d{{4}}",
                     report["stdout"])


def _value(folder, number: int) -> float:
    rows = {int(r["number"]): r for r in csv.DictReader((folder / "trials.csv").open())}
    return float(rows[number]["value"])


def test_trials_csv_has_one_row_per_trial_with_params_and_metrics(report, study):
    rows = list(csv.DictReader((report["folder"] / "trials.csv").open()))
    assert [int(r["number"]) for r in rows] == sorted(study.states)
    assert {r["state"] for r in rows} == {"COMPLETE", "PRUNED"}
    for column in ("value", "param_lr", "param_loss", "epochs", "test_mdice", "test_miou", "parameters", "latency_torch_ms",
                   "seconds"):
        assert column in rows[0], column
    complete = [r for r in rows if r["state"] == "COMPLETE"]
    assert all(0 < float(r["test_mdice"]) < 1 and int(r["epochs"]) == 3 for r in complete)
    pruned = [r for r in rows if r["state"] == "PRUNED"]
    assert pruned and all(int(r["epochs"]) < 3 for r in pruned)


def test_loss_curves_tell_pruned_trials_apart(report, study):
    page = (report["folder"] / "loss_curves.html").read_text()
    for number in study.numbers(TrialState.PRUNED):
        assert f"trial {number} (pruned)" in page
    assert re.search(r'"dash":\s*"dot"', page) and "validation mDice" in page


def test_a_study_without_a_complete_trial_says_so(study, tmp_path, capsys):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("POLYP_CACHE", str(study.cache))
        code = main(["--study", str(study.toml.with_name("nothing-complete.toml")), "--run-dir", str(study.run_dir)])
    error = capsys.readouterr().err
    assert code == 1
    assert "has no finished (complete) trial yet (0 pruned, 1 failed, 1 running, 0 waiting)" in error
    folder = study.run_dir / "nothing-complete" / "report"
    assert "has no finished (complete) trial yet" in (folder / "index.html").read_text()
    rows = list(csv.DictReader((folder / "trials.csv").open()))
    assert [(r["state"], r["fail_reason"]) for r in rows] == [("FAIL", "RuntimeError: scripted failure for the test"),
                                                               ("RUNNING", "")]
    assert "trial 1 (running)" in (folder / "loss_curves.html").read_text()  # its reported epochs so far


def test_an_unknown_study_is_refused_with_the_known_ones(study, tmp_path, capsys):
    toml = tmp_path / "elsewhere.toml"
    toml.write_text(study.toml.read_text().replace('name = "mini"', 'name = "elsewhere"'))
    assert main(["--study", str(toml), "--run-dir", str(study.run_dir)]) == 2
    assert "no study 'elsewhere'" in capsys.readouterr().err
