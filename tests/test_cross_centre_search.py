"""The search layer with several data sets: [run] keys and flags, trials ranked and pruned by the objective,
per-set columns in what a search leaves behind, and the refit table per set (fake trainers, no training)."""

from __future__ import annotations

import copy
import csv
import re
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from search_fixtures import TINY_STUDY, fast_pictures, search_cache, write_study  # noqa: F401

from polyp.data import write_synthetic
from search import replay
from search.analyze import main as analyze_main
from search.engine.notes import note_markdown
from search.engine.record import TrialRecord, run_data
from search.engine.storage import default_storage_url
from search.refit import main as refit_main
from search.run import main as run_main
from search.study.definition import StudyError, parse_study

pytestmark = pytest.mark.usefixtures("search_cache", "fast_pictures")
FAKE = ["--trainer", "search.testing:fake_fit", "--data", "synthetic", "--quiet"]


@pytest.fixture
def other_centre(tmp_path: Path) -> Path:
    """A second "hospital": 12 synthetic images unlike the training ones."""
    return write_synthetic(tmp_path / "centre-c", count=12, size=32, seed=7)


def _study(tmp_path: Path, **run) -> Path:
    tables = copy.deepcopy(TINY_STUDY)
    tables["run"].update({"synthetic_count": 16, "sampler": "grid", "pruner": "none", **run})
    tables["space"] = {"lr": [1e-3, 3e-3], "batch_size": [4, 16]}
    return write_study(tmp_path, tables)


def _load(out: Path, name: str = "tiny") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=default_storage_url(out))


@pytest.mark.parametrize("run, key, message", [
    ({"objective": "cvc", "val_data": ["etis=/e"]}, "objective",
     "objective 'cvc' names no validation set; use one of mean, worst, synthetic, etis"),
    ({"data": ["k=/a", "k=/b"]}, "data", "the set name 'k' is given twice"),
    ({"val_data": "k=/a", "data": "k=/b"}, "data", "'k' is also a --data set"),
    ({"val_data": [1, 2]}, "val_data", "expected a string or a list of strings"),
    ({"val_limit": -1}, "val_limit", "-1 is negative"),
])
def test_bad_data_settings_in_run_are_refused_with_the_key(run, key, message):
    tables = copy.deepcopy(TINY_STUDY)
    tables["run"].update(run)
    with pytest.raises(StudyError) as raised:
        parse_study(tables, "tiny", "s.toml: ")
    assert f"s.toml: [run].{key}: " in str(raised.value) and message in str(raised.value)


def test_a_study_lists_its_training_and_validation_sets():
    tables = copy.deepcopy(TINY_STUDY)
    tables["run"].update(data=["kvasir=/d/k", "cvc=/d/c"], test_list=["kvasir=/d/t.txt"], val_data=["etis=/d/e"],
                         groups=["cvc=/d/seq.csv"], objective="worst")
    run = parse_study(tables, "tiny").run
    assert [(s.name, s.test_list, s.groups) for s in run.sources()] == [("kvasir", "/d/t.txt", ""),
                                                                        ("cvc", "", "/d/seq.csv")]
    assert [s.name for s in run.external()] == ["etis"] and run.objective == "worst"


def test_trials_are_ranked_and_pruned_by_the_objective(tmp_path, other_centre, capsys):
    out = tmp_path / "runs"
    code = run_main(["--study", str(_study(tmp_path, pruner="median")), "--run-dir", str(out), "--n-trials", "4",
                     *FAKE, "--val-data", f"c={other_centre}", "--objective", "worst"])
    printed = capsys.readouterr().out
    assert code == 0
    study = _load(out)
    for trial in study.get_trials(states=(TrialState.COMPLETE,)):
        record = TrialRecord.of(trial)
        assert trial.value == pytest.approx(min(record.val["mdice"], record.val["c_mdice"]))
        assert trial.value == pytest.approx(record.val["objective"])
        reported = [trial.intermediate_values[epoch] for epoch in sorted(trial.intermediate_values)]
        assert reported == pytest.approx([row["objective"] for row in record.history])
        assert all("val_c_mdice" in row for row in record.history)
        with open(out / "tiny" / f"trial-{trial.number}" / "history.csv") as handle:
            assert "val_c_mdice" in next(csv.reader(handle))
    assert re.search(r"trial\s+objective\s+val c\s+test mDice", printed), printed
    assert "validation only: c " in printed
    assert run_data(study)["objective"] == "worst" and run_data(study)["val_data"] == [f"c={other_centre.resolve()}"]


def test_analyze_finds_the_validation_sets_on_the_study_and_reports_a_column_each(tmp_path, other_centre, capsys):
    out = tmp_path / "runs"
    study = _study(tmp_path)
    assert run_main(["--study", str(study), "--run-dir", str(out), "--n-trials", "2", *FAKE,
                     "--val-data", f"c={other_centre}"]) == 0
    assert analyze_main(["--study", str(study), "--run-dir", str(out)]) == 0
    capsys.readouterr()
    with open(out / "tiny" / "report" / "trials.csv") as handle:
        header = next(csv.reader(handle))
    assert {"val_mdice", "val_c_mdice", "val_c_miou", "val_objective"} <= set(header)
    assert "<th>val c</th>" in (out / "tiny" / "report" / "index.html").read_text()


def test_the_refit_table_gives_each_set_and_picks_the_winner_by_the_objective(tmp_path, other_centre, capsys):
    out = tmp_path / "runs"
    study = _study(tmp_path, objective="c")
    data = [*FAKE, "--val-data", f"c={other_centre}"]
    assert run_main(["--study", str(study), "--run-dir", str(out), "--n-trials", "4", *data]) == 0
    assert refit_main(["--study", str(study), "--run-dir", str(out), "--top", "2", "--seeds", "2",
                       "--image-size", "64", "--epochs", "2", *data]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"refit val objective\s+val c\s+refit test mDice", printed), printed
    assert "winner (best mean validation objective, 2 runs)" in printed
    refit = _load(out, "tiny.refit")
    by_source: dict[int, list[float]] = {}
    for trial in refit.get_trials(states=(TrialState.COMPLETE,)):
        record = TrialRecord.of(trial)
        assert trial.value == pytest.approx(record.val["c_mdice"])  # objective "c": that set's mDice
        by_source.setdefault(record.refit_source, []).append(trial.value)
    best = max(by_source, key=lambda source: sum(by_source[source]) / 2)
    assert f"trial {best}'s configuration" in printed.split("winner")[-1]


def test_a_study_without_validation_sets_keeps_its_old_data_record(tmp_path, capsys):
    out = tmp_path / "runs"
    assert run_main(["--study", str(_study(tmp_path)), "--run-dir", str(out), "--n-trials", "1", *FAKE]) == 0
    capsys.readouterr()
    assert set(run_data(_load(out))) == {"data", "test_list"}  # as studies before the validation sets kept it


def test_an_objective_naming_no_set_stops_the_command_before_any_trial(tmp_path, other_centre, capsys):
    out = tmp_path / "runs"
    code = run_main(["--study", str(_study(tmp_path)), "--run-dir", str(out), "--n-trials", "1", *FAKE,
                     "--val-data", f"c={other_centre}", "--objective", "etis"])
    assert code == 2
    assert "--objective: objective 'etis' names no validation set; use one of mean, worst, synthetic, c" in \
        capsys.readouterr().err
    assert not (out / "optuna.db").exists()


def test_a_study_objective_needing_validation_sets_the_command_line_does_not_give_is_refused(tmp_path, capsys):
    code = run_main(["--study", str(_study(tmp_path, objective="c")), "--run-dir", str(tmp_path / "runs"),
                     "--n-trials", "1", *FAKE])
    assert code == 2
    assert "study tiny's [run].objective: objective 'c' names no validation set" in capsys.readouterr().err


def test_a_replay_ranks_rows_by_the_objective_and_writes_a_column_per_set(tmp_path, other_centre, capsys):
    sheet = tmp_path / "rows.csv"
    sheet.write_text("lr,batch_size,notes\n3e-3,4,first\n1e-3,16,second\n")
    out = tmp_path / "runs"
    assert replay.main(["--csv", str(sheet), "--study", str(_study(tmp_path)), "--run-dir", str(out), *FAKE,
                        "--val-data", f"c={other_centre}", "--objective", "c"]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"val mDice\s+objective\s+test mDice", printed), printed
    with open(out / "tiny" / "replay-results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["notes"] for row in rows] == ["first", "second"]
    study = _load(out)
    for row in rows:
        trial = study.trials[int(row["trial"])]
        assert float(row["objective"]) == pytest.approx(trial.value, abs=1e-4)
        assert float(row["val_c_mdice"]) == pytest.approx(trial.value, abs=1e-4)  # objective "c"


def test_a_trial_note_has_a_row_per_set_and_the_objective():
    study = optuna.create_study()
    trial = study.ask()
    trial.set_user_attr("config", {"arch": "linknet", "photometric": "strong", "multi_scale": False})
    facts = {"status": "completed", "val": {"mdice": 0.9, "c_mdice": 0.7, "c_miou": 0.6, "objective": 0.8}}
    note = note_markdown(trial, facts, {})
    assert "| c_mdice | 0.7000 | |" in note and "| objective | 0.8000 | |" in note
    assert "| photometric | `strong` |" in note and "multi_scale" not in note  # set only when it is on


def test_a_study_objective_naming_a_command_line_set_opens_for_analyze_and_refit_without_the_flags(
        tmp_path, other_centre, capsys):
    out = tmp_path / "runs"
    study = _study(tmp_path, objective="c")
    assert run_main(["--study", str(study), "--run-dir", str(out), "--n-trials", "2", *FAKE,
                     "--val-data", f"c={other_centre}"]) == 0
    assert analyze_main(["--study", str(study), "--run-dir", str(out)]) == 0
    assert refit_main(["--study", str(study), "--run-dir", str(out), "--top", "1", "--seeds", "1",
                       "--image-size", "64", "--epochs", "2", *FAKE]) == 0  # --data given, --val-data kept
    printed = capsys.readouterr().out
    assert re.search(r"refit val objective\s+val c", printed), printed
    refit = _load(out, "tiny.refit")
    assert all("c_mdice" in TrialRecord.of(t).val for t in refit.get_trials(states=(TrialState.COMPLETE,)))


def test_going_on_with_a_study_under_another_objective_is_refused(tmp_path, other_centre, capsys):
    out = tmp_path / "runs"
    study = _study(tmp_path)
    base = ["--study", str(study), "--run-dir", str(out), *FAKE, "--val-data", f"c={other_centre}"]
    assert run_main([*base, "--n-trials", "1"]) == 0
    capsys.readouterr()
    assert run_main([*base, "--n-trials", "2", "--objective", "worst"]) == 2
    assert "its complete trials were ranked by other validation settings (objective 'mean' before, 'worst' now)" in \
        capsys.readouterr().err
    assert len(_load(out).trials) == 1


def test_a_single_validation_set_may_be_written_as_a_string():
    tables = copy.deepcopy(TINY_STUDY)
    tables["run"].update(val_data="cvc=/d/c", groups="cvc=/d/seq.csv")
    run = parse_study(tables, "tiny").run
    assert [(s.name, s.folder, s.groups) for s in run.external()] == [("cvc", "/d/c", "/d/seq.csv")]


def test_the_robustness_settings_are_searchable():
    from optuna.trial import FixedTrial

    from search.study.space import suggest

    tables = copy.deepcopy(TINY_STUDY)
    tables["space"] = {"photometric": ["none", "strong"], "multi_scale": [False, True], "swa_epochs": [0, 2],
                       "loss": ["bce+dice", "structure"]}
    spec = parse_study(tables, "tiny")
    cfg = suggest(FixedTrial({"photometric": "strong", "multi_scale": True, "swa_epochs": 2, "loss": "structure"}), spec)
    assert (cfg.photometric, cfg.multi_scale, cfg.swa_epochs, cfg.loss) == ("strong", True, 2, "structure")
