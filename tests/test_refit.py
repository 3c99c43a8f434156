"""`python -m search.refit`: the best configurations trained again (seeds, folds) in the companion study
NAME.refit, its table and rank correlation, resume, workers, the report, and the winner's export (one run or
the ensemble of its runs)."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from optuna.trial import TrialState
from pg import postgres_url  # noqa: F401
from search_fixtures import TINY_STUDY, fast_pictures, search_cache, worker_env, write_study  # noqa: F401

from polyp.checkpoint import load_checkpoint
from polyp.data import Split, resolve_data_dir
from polyp.evaluate.__main__ import main as evaluate_main
from polyp.models.ensemble import Ensemble
from polyp.onnx_export import export_onnx, onnx_max_difference
from polyp.predict import Predictor
from search.analyze import main as analyze_main
from search.engine.record import TrialRecord
from search.engine.storage import default_storage_url
from search.export import main as export_main
from search.refit import main as refit_main
from search.results.refit_table import RefitRow, rank_correlation, refit_rows, refit_table, winner
from search.run import main as run_main
from search.study.definition import RefitSettings, StudyError, load_study

FAKE = ["--trainer", "search.testing:fake_fit", "--data", "synthetic", "--quiet"]

pytestmark = pytest.mark.usefixtures("search_cache", "fast_pictures")  # in-process trials draw no pictures


@pytest.fixture
def searched(tmp_path: Path) -> tuple[Path, Path]:
    """(study file, run folder) of a finished tiny search: 5 trials with scripted values, one per lr."""
    tables = copy.deepcopy(TINY_STUDY)
    tables["run"]["synthetic_count"] = 16
    tables["space"]["lr"] = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2]
    tables["run"]["sampler"] = "grid"
    tables["run"]["pruner"] = "none"
    study = write_study(tmp_path, tables)
    out = tmp_path / "runs"
    assert run_main(["--study", str(study), "--run-dir", str(out), "--n-trials", "5", *FAKE]) == 0
    return study, out


def _refit(study: Path, out: Path, *extra: str) -> list[str]:
    return ["--study", str(study), "--run-dir", str(out), "--image-size", "64", "--epochs", "2", *FAKE, *extra]


def _studies(out: Path) -> tuple[optuna.Study, optuna.Study]:
    storage = default_storage_url(out)
    return (optuna.load_study(study_name="tiny", storage=storage),
            optuna.load_study(study_name="tiny.refit", storage=storage))


def test_refit_trains_the_top_configurations_with_each_seed(searched, capsys):
    study, out = searched
    assert refit_main(_refit(study, out, "--top", "2", "--seeds", "3")) == 0
    printed = capsys.readouterr().out
    source, refit = _studies(out)
    best = sorted((t for t in source.trials if t.state == TrialState.COMPLETE), key=lambda t: -t.value)[:2]
    records = [TrialRecord.of(t) for t in refit.trials]
    assert len(records) == 6 and all(r.state == TrialState.COMPLETE for r in records)
    assert {(r.refit_source, r.refit_seed, r.refit_fold) for r in records} == {
        (t.number, seed, -1) for t in best for seed in range(3)}
    for record in records:
        config = record.config
        assert (config["image_size"], config["epochs"], config["seed"]) == (64, 2, record.refit_seed)
        assert config["lr"] == next(t for t in best if t.number == record.refit_source).params["lr"]
    for trial in best:
        assert re.search(rf"^\s+{trial.number}\s+{trial.value:.4f}\s+3\s+\d\.\d{{4}} ± \d\.\d{{4}}", printed, re.M)
    assert "Spearman's rho between the search's ranking and the refit's" in printed
    assert f"winner (best mean validation mDice, 3 runs): trial {best[0].number}'s configuration" in printed
    assert refit.user_attrs  # the refit settings live on the study, for analyze and export
    assert (out / "tiny.refit" / "split.json").read_text() == (out / "tiny" / "split.json").read_text()


def test_refit_resumes_and_extends_without_training_a_run_twice(searched, capsys):
    study, out = searched
    assert refit_main(_refit(study, out, "--top", "2", "--seeds", "1")) == 0
    assert refit_main(_refit(study, out, "--top", "2", "--seeds", "1")) == 0
    assert "2 runs (0 enqueued now)" in capsys.readouterr().out
    assert len(_studies(out)[1].trials) == 2
    assert refit_main(_refit(study, out, "--top", "3", "--seeds", "2")) == 0
    refit = _studies(out)[1]
    assert len(refit.trials) == 6 and len({TrialRecord.of(t).refit_source for t in refit.trials}) == 3


def test_refit_with_other_size_on_the_same_storage_is_refused(searched, capsys):
    study, out = searched
    assert refit_main(_refit(study, out, "--top", "1", "--seeds", "1")) == 0
    argv = _refit(study, out, "--top", "1", "--seeds", "1")
    argv[argv.index("--image-size") + 1] = "96"
    assert refit_main(argv) == 2
    assert "already holds refit runs at 64 px" in capsys.readouterr().err


def test_a_refused_refit_stores_nothing_and_bad_sizes_are_refused(searched, capsys):
    study, out = searched
    assert refit_main(_refit(study, out, "--top", "1", "--seeds", "1", "--folds", "500")) == 2
    assert "500 folds need 2.." in capsys.readouterr().err
    assert refit_main(_refit(study, out, "--top", "1", "--seeds", "1", "--folds", "-2")) == 2
    argv = _refit(study, out, "--top", "1", "--seeds", "1")
    argv[argv.index("--image-size") + 1] = "100"
    assert refit_main(argv) == 2
    assert "--image-size 100" in capsys.readouterr().err
    argv[argv.index("--image-size") + 1] = "64"
    argv[argv.index("--epochs") + 1] = "0"
    assert refit_main(argv) == 2
    refit = _studies(out)[1]
    assert not refit.trials and "refit_settings" not in refit.user_attrs  # nothing kept from the refused runs
    assert refit_main(_refit(study, out, "--top", "1", "--seeds", "1", "--folds", "2")) == 0  # other folds: fine
    assert len(_studies(out)[1].trials) == 2


def test_refit_of_a_study_without_complete_trials_says_so(tmp_path: Path, capsys):
    study = write_study(tmp_path, copy.deepcopy(TINY_STUDY))
    out = tmp_path / "runs"
    out.mkdir()
    optuna.create_study(study_name="tiny", storage=default_storage_url(out))
    assert refit_main(_refit(study, out)) == 2
    assert "has no complete trial to refit" in capsys.readouterr().err


def test_folds_partition_the_non_test_images_and_each_run_validates_on_its_fold(searched):
    study, out = searched
    assert refit_main(_refit(study, out, "--top", "1", "--seeds", "1", "--folds", "3")) == 0
    source_split = Split.load(out / "tiny" / "split.json")
    split = Split.load(out / "tiny.refit" / "split.json")
    assert split.test == source_split.test and len(split.folds) == 3
    assert sorted(s for fold in split.folds for s in fold) == sorted(source_split.train + source_split.val)
    assert not set(split.folds[0]) & set(split.folds[1])
    fold = split.fold(1)
    assert fold.val == split.folds[1] and not set(fold.train) & set(fold.val) and not set(fold.train) & set(split.test)
    refit = _studies(out)[1]
    assert sorted(TrialRecord.of(t).refit_fold for t in refit.trials) == [0, 1, 2]
    assert all(t.state == TrialState.COMPLETE for t in refit.trials)


def test_winner_is_chosen_by_validation_never_by_test():
    by_val = RefitRow(1, 0.70, "a", 2, [0.80, 0.82], [0.70, 0.71], [0, 1])
    by_test = RefitRow(2, 0.72, "b", 2, [0.78, 0.79], [0.90, 0.91], [2, 3])
    assert winner([by_test, by_val]) is by_val
    assert rank_correlation([by_val, by_test]) == pytest.approx(-1.0)
    flat = RefitRow(3, 0.60, "c", 2, [0.70, 0.70], [0.6, 0.6], [4, 5])
    assert rank_correlation([by_val, by_test, flat]) == pytest.approx(0.5)
    lucky = RefitRow(4, 0.65, "d", 1, [0.95], [0.9], [6], planned=2)  # its other seed failed
    assert winner([by_val, lucky]) is by_val and winner([lucky]) is lucky
    assert "trial 4's configuration 1 of 2; the winner is chosen among" in refit_table([by_val, lucky])


def test_analyze_reports_the_refit_study_per_configuration(searched, capsys):
    study, out = searched
    assert refit_main(_refit(study, out, "--top", "2", "--seeds", "2")) == 0
    assert analyze_main(["--study", f"{study}.refit", "--run-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Spearman's rho" in printed
    csv = (out / "tiny.refit" / "report" / "refit.csv").read_text().splitlines()
    assert csv[0].startswith("source_trial,search_val_mdice,runs,refit_val_mdice_mean") and len(csv) == 3
    assert "Refit: each configuration" in (out / "tiny.refit" / "report" / "index.html").read_text()
    refit = _studies(out)[1]
    best = winner(refit_rows(refit))
    winning_run = max((t for t in refit.trials if t.number in best.trials), key=lambda t: t.value)
    assert f"trial {winning_run.number} (the refit winner's best run) on the test split" in printed


def test_export_of_a_refit_study_gives_the_winner_and_its_ensemble(searched, tmp_path: Path, capsys):
    study, out = searched
    assert refit_main(_refit(study, out, "--top", "2", "--seeds", "2")) == 0
    refit = _studies(out)[1]
    printed = capsys.readouterr().out
    winning_source = int(re.search(r"winner .*: trial (\d+)'s configuration", printed).group(1))
    runs = [t for t in refit.trials if TrialRecord.of(t).refit_source == winning_source]
    assert export_main(["--study", f"{study}.refit", "--run-dir", str(out), "--out", str(tmp_path / "one")]) == 0
    exported = json.loads((tmp_path / "one" / "training.json").read_text())
    assert exported["trial"] == max(runs, key=lambda t: t.value).number

    assert export_main(["--study", f"{study}.refit", "--run-dir", str(out), "--out", str(tmp_path / "ensemble"),
                        "--ensemble", "--onnx"]) == 0
    training = json.loads((tmp_path / "ensemble" / "training.json").read_text())
    assert sorted(m["trial"] for m in training["ensemble"]["members"]) == sorted(t.number for t in runs)
    assert {m["seed"] for m in training["ensemble"]["members"]} == {0, 1}
    assert training["metrics"]["test_own_size"]["images"] > 0
    model, info = load_checkpoint(tmp_path / "ensemble")
    assert isinstance(model, Ensemble) and len(model.members) == 2 and info.image_size == 64
    images = [np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)]
    members = [Predictor(member, 64, info.mean, info.std, precision="fp32").probabilities(images)[0]
               for member in model.members]
    together = Predictor(model, 64, info.mean, info.std, precision="fp32").probabilities(images)[0]
    assert np.allclose(together, np.mean(members, axis=0), atol=1e-5)
    assert (tmp_path / "ensemble" / "model.onnx").is_file()
    data = resolve_data_dir("synthetic", 16, 64)
    assert evaluate_main(["--model", str(tmp_path / "ensemble"), "--data", f"synthetic={data}",
                          "--out", str(tmp_path / "evaluation")]) == 0
    assert "synthetic" in (tmp_path / "evaluation" / "summary.csv").read_text()

    assert export_main(["--study", f"{study}.refit", "--run-dir", str(out), "--out", str(tmp_path / "top"),
                        "--ensemble", "top"]) == 0
    members = json.loads((tmp_path / "top" / "training.json").read_text())["ensemble"]["members"]
    by_source: dict[int, list] = {}
    for trial in refit.trials:
        by_source.setdefault(TrialRecord.of(trial).refit_source, []).append(trial)
    assert len(by_source) == 2 and members[0]["source_trial"] == winning_source
    assert {m["trial"] for m in members} == {max(runs, key=lambda t: t.value).number for runs in by_source.values()}
    assert "the best run of each configuration" in capsys.readouterr().out


def test_ensemble_needs_a_refit_study(searched, tmp_path: Path, capsys):
    study, out = searched
    assert export_main(["--study", str(study), "--run-dir", str(out), "--out", str(tmp_path / "e"), "--ensemble"]) == 2
    assert "is not a refit study" in capsys.readouterr().err
    assert export_main(["--study", str(study), "--run-dir", str(out), "--out", str(tmp_path / "e"),
                        "--ensemble", "--trial", "0"]) == 2
    assert "--trial cannot go with it" in capsys.readouterr().err


def test_ensemble_of_runs_that_expect_different_input_names_them(searched, tmp_path: Path, capsys):
    study, out = searched
    assert refit_main(_refit(study, out, "--top", "2", "--seeds", "1")) == 0
    refit = _studies(out)[1]
    changed = out / "tiny.refit" / f"trial-{refit.trials[1].number}" / "checkpoint" / "training.json"
    training = json.loads(changed.read_text())
    training["preprocessing"].update(mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5])  # as an EfficientNet-Lite run's
    changed.write_text(json.dumps(training))
    capsys.readouterr()
    assert export_main(["--study", f"{study}.refit", "--run-dir", str(out), "--out", str(tmp_path / "e"),
                        "--ensemble", "top"]) == 2
    error = capsys.readouterr().err
    assert f"run {refit.trials[1].number}: 64 px, mean (0.5, 0.5, 0.5)" in error and "expect different input" in error
    assert not (tmp_path / "e").exists()


@pytest.mark.slow  # the PostgreSQL test above runs two refit processes at once in the default run
def test_two_workers_share_the_refit_runs(searched, monkeypatch, capsys):
    study, out = searched
    monkeypatch.setenv("PYTHONPATH", worker_env()["PYTHONPATH"])
    assert refit_main(_refit(study, out, "--top", "2", "--seeds", "2", "--workers", "2")) == 0
    refit = _studies(out)[1]
    assert len(refit.trials) == 4 and all(t.state == TrialState.COMPLETE for t in refit.trials)
    assert len({TrialRecord.of(t).worker for t in refit.trials}) == 2
    assert "Spearman's rho" in capsys.readouterr().out


def test_ensemble_module_averages_probabilities():
    members = [torch.nn.Conv2d(3, 1, 1), torch.nn.Conv2d(3, 1, 1)]
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        expected = (torch.sigmoid(members[0](x)) + torch.sigmoid(members[1](x))) / 2
        assert torch.allclose(torch.sigmoid(Ensemble(members)(x)), expected, atol=1e-5)


def test_confident_ensemble_keeps_its_logit_and_exports_to_onnx(tmp_path: Path):
    members = [torch.nn.Conv2d(3, 1, 1), torch.nn.Conv2d(3, 1, 1)]
    with torch.no_grad():
        for scale, member in zip((8.0, 12.0), members, strict=True):  # logits of about -40..40: p near 0 and 1
            member.weight.fill_(scale)
            member.bias.fill_(1.0)
    model = Ensemble(members).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        z = torch.stack([member(x) for member in members]).double()
        expected = torch.logit(torch.sigmoid(z).mean(0))  # float64: the exact value where it is representable
        got = model(x).double()
    finite = expected.abs() < 30
    assert finite.any() and torch.allclose(got[finite], expected[finite], atol=1e-4)
    assert torch.isfinite(got).all() and (got.sign() == z.mean(0).sign()).all()
    export_onnx(model, 16, tmp_path / "model.onnx")
    assert onnx_max_difference(model, tmp_path / "model.onnx", 16) < 1e-3


@pytest.mark.slow  # refit runs are enqueued once by search.engine.enqueue, which test_replay's two PostgreSQL
@pytest.mark.postgres  # workers check in the default run
def test_refit_on_two_machines_through_postgresql(tmp_path: Path, postgres_url):  # noqa: F811
    tables = copy.deepcopy(TINY_STUDY)
    tables["run"].update(synthetic_count=16, sampler="grid", pruner="none")
    tables["space"]["lr"] = [1e-4, 1e-3, 3e-3]
    study = write_study(tmp_path, tables)
    assert run_main(["--study", str(study), "--run-dir", str(tmp_path / "a"), "--storage", postgres_url,
                     "--n-trials", "3", *FAKE]) == 0
    machines = [subprocess.Popen([sys.executable, "-m", "search.refit", "--study", str(study), "--run-dir",
                                  str(tmp_path / name), "--storage", postgres_url, "--top", "2", "--seeds", "2",
                                  "--image-size", "64", "--epochs", "3", "--data", "synthetic", "--quiet",
                                  "--trainer", "fake_trainers:epochs_300ms"],
                                 env=worker_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                for name in ("a", "b")]  # b ran no search: it computes the same split from the data and seed
    outputs = [machine.communicate(timeout=240)[0] for machine in machines]
    assert [machine.returncode for machine in machines] == [0, 0], "\n".join(outputs)
    refit = optuna.load_study(study_name="tiny.refit", storage=postgres_url)
    keys = [(TrialRecord.of(t).refit_source, TrialRecord.of(t).refit_seed) for t in refit.trials]
    assert len(keys) == 4 and len(set(keys)) == 4 and all(t.state == TrialState.COMPLETE for t in refit.trials)
    assert len({TrialRecord.of(t).worker for t in refit.trials}) == 2, "both machines trained runs"
    assert Split.load(tmp_path / "b" / "tiny.refit" / "split.json").test == Split.load(
        tmp_path / "a" / "tiny" / "split.json").test


def test_analyze_export_and_refit_use_the_data_the_search_trained_on(tmp_path: Path, synthetic_dir: Path, capsys):
    tables = copy.deepcopy(TINY_STUDY)  # its [run] says synthetic; the search ran on a folder
    study = write_study(tmp_path, tables)
    out = tmp_path / "runs"
    assert run_main(["--study", str(study), "--run-dir", str(out), "--n-trials", "2", "--data", str(synthetic_dir),
                     "--trainer", "search.testing:fake_fit", "--quiet"]) == 0
    assert export_main(["--study", str(study), "--run-dir", str(out), "--out", str(tmp_path / "best")]) == 0
    training = json.loads((tmp_path / "best" / "training.json").read_text())
    assert training["metrics"]["test_own_size"]["images"] == len(Split.load(out / "tiny" / "split.json").test)
    assert refit_main(["--study", str(study), "--run-dir", str(out), "--top", "1", "--seeds", "1", "--epochs", "1",
                       "--trainer", "search.testing:fake_fit", "--quiet"]) == 0
    assert str(synthetic_dir.resolve()) in capsys.readouterr().out  # the refit's data line names the folder


@pytest.mark.parametrize(("table", "words"), [
    ({"seed": 2}, ["[refit].seed: unknown key", "seeds"]),
    ({"seeds": "two"}, ["[refit].seeds: expected int"]),
    ({"folds": 1}, ["[refit].folds: 1 fold"]),
    ({"top": 0}, ["[refit].top: 0 must be at least 1"]),
    ({"image_size": 100}, ["[refit].image_size"]),
])
def test_a_bad_refit_table_is_refused_naming_the_key(tmp_path: Path, table: dict, words: list[str]):
    tables = copy.deepcopy(TINY_STUDY)
    tables["refit"] = table
    with pytest.raises(StudyError) as error:
        load_study(str(write_study(tmp_path, tables)))
    assert all(word in str(error.value) for word in words), str(error.value)


def test_refit_defaults_come_from_the_refit_table_else_the_search():
    spec = load_study("demo.refit")
    assert spec.name == "demo.refit" and spec.run.pruner == "none"
    assert (spec.base.image_size, spec.base.epochs) == (96, 12) and (spec.refit.top, spec.refit.seeds) == (2, 2)
    derived = RefitSettings().resolved(load_study("grid").base)
    assert (derived.image_size, derived.epochs) == (256, 36)  # twice 128 px, three times 12 epochs
