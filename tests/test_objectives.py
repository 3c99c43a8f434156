"""`[run].objectives = ["mdice", "latency_ms"]`: a study that searches validation mDice and speed together."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from search_fixtures import TINY_STUDY, search_cache, write_study  # noqa: F401

from search.engine.record import TrialRecord, trial_value
from search.study.definition import parse_study
from search.study.errors import StudyError


def _study_file(folder: Path, objectives: list[str] | None, sampler: str = "tpe", name: str = "study.toml") -> Path:
    tables = {table: dict(entries) for table, entries in TINY_STUDY.items()}
    tables["run"].update({"sampler": sampler, "startup_trials": 2})
    if objectives is not None:
        tables["run"]["objectives"] = objectives
    return write_study(folder, tables, name)


@pytest.fixture(scope="module")
def searched(tmp_path_factory, synthetic_dir):
    """A two-objective search of 4 fake trials with NSGA-II, and what search.run printed."""
    from search.run import main as run_main

    folder = tmp_path_factory.mktemp("objectives")
    toml = _study_file(folder, ["mdice", "latency_ms"], sampler="nsga2")
    common = ["--study", str(toml), "--run-dir", str(folder / "runs"), "--data", str(synthetic_dir)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("POLYP_CACHE", str(folder / "cache"))
        import contextlib
        import io
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = run_main([*common, "--n-trials", "4", "--trainer", "search.testing:fake_fit"])
    storage = f"sqlite:///{folder / 'runs' / 'optuna.db'}"
    return {"code": code, "stdout": out.getvalue(), "stderr": err.getvalue(), "folder": folder, "toml": toml,
            "common": common, "study": optuna.load_study(study_name="tiny", storage=storage)}


def test_the_study_keeps_both_objectives_and_every_trial_returns_its_latency(searched):
    assert searched["code"] == 0, searched["stderr"]
    study = searched["study"]
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"] and study.metric_names == ["mdice", "latency_ms"]
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(complete) == 4
    for trial in complete:
        record = TrialRecord.of(trial)
        assert trial.values[1] == record.fastest_ms > 0 and trial_value(trial) == record.value == trial.values[0]
        assert trial.intermediate_values == {}  # not reported: Optuna prunes single-objective studies only
    assert study.best_trials  # the Pareto front, as optuna-dashboard shows it
    assert "searches mdice and latency_ms together: Optuna prunes single-objective studies only" in searched["stderr"]
    assert "pruner 'median' is not used" in searched["stderr"]
    best = max(complete, key=trial_value)
    assert f"best {trial_value(best):.4f} (trial {best.number})" in searched["stdout"]


def test_the_report_draws_optunas_pareto_front_and_its_other_plots_rank_by_mdice(searched, capsys):
    from search.analyze import main as analyze_main

    code = analyze_main(["--study", str(searched["toml"]), "--run-dir", str(searched["folder"] / "runs")])
    assert code == 0, capsys.readouterr().err
    report = searched["folder"] / "runs" / "tiny" / "report"
    for name in ("pareto_front.html", "optimization_history.html", "speed_front.html", "speed_front.png"):
        assert (report / name).is_file(), name
    assert "Pareto front of mDice and latency" in (report / "index.html").read_text()


def test_export_takes_the_best_mdice_or_the_best_within_a_latency_limit(searched, tmp_path):
    from search.export import main as export_main

    study = searched["study"]
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    best = max(complete, key=trial_value)
    common = ["--study", str(searched["toml"]), "--run-dir", str(searched["folder"] / "runs")]
    assert export_main([*common, "--out", str(tmp_path / "best")]) == 0
    assert f'"trial": {best.number}' in (tmp_path / "best" / "training.json").read_text()
    limit = min(t.values[1] for t in complete) + 1e-6
    fastest = min(complete, key=lambda t: t.values[1])
    assert export_main([*common, "--out", str(tmp_path / "fast"), "--max-latency-ms", str(limit)]) == 0
    assert f'"trial": {fastest.number}' in (tmp_path / "fast" / "training.json").read_text()


def test_going_on_with_other_objectives_is_refused_and_nothing_is_lost(searched, capsys):
    from search.run import main as run_main

    single = _study_file(searched["folder"], None, name="single.toml")
    code = run_main(["--study", str(single), *searched["common"][2:], "--n-trials", "5",
                     "--trainer", "search.testing:fake_fit"])
    assert code == 2
    said = capsys.readouterr().err
    assert "study tiny: it was created with objectives [mdice, latency_ms], this command asks for [mdice]" in said
    assert "give --objectives mdice latency_ms (or set [run].objectives so)" in said
    assert len(searched["study"].get_trials()) == 4


@pytest.mark.parametrize(("run", "message"), [
    ({"objectives": ["latency_ms"]}, r"\[run\].objectives: \['latency_ms'\] is not one of \['mdice'\], \['mdice', 'latency_ms'\]"),
    ({"objectives": ["mdice", "latency_ms"], "latency": "none"}, r"\[run\].objectives: \"latency_ms\" needs the trials timed"),
    ({"objectives": ["mdice", "latency_ms"], "sampler": "gp", "max_latency_ms": 33.0}, r"sampler 'gp' cannot learn a latency limit"),
    ({"objectives": 3}, r"\[run\].objectives: expected a string or a list of strings, got 3"),
])
def test_bad_objectives_are_refused_with_the_key(run, message):
    with pytest.raises(StudyError, match=message):
        parse_study({"study": {"name": "x"}, "run": run}, "x", "x.toml: ")


def test_a_study_without_objectives_stays_single_objective_and_a_refit_ranks_by_mdice():
    from search.study.definition import RefitSettings, refit_study

    plain = parse_study({"study": {"name": "x"}}, "x", "x.toml: ")
    assert not plain.run.multi_objective and plain.run.directions == ["maximize"]
    both = parse_study({"study": {"name": "x"}, "run": {"objectives": ["mdice", "latency_ms"]}}, "x", "x.toml: ")
    assert both.run.multi_objective and both.run.directions == ["maximize", "minimize"]
    refit = refit_study(both, RefitSettings(top=1, seeds=1, image_size=64, epochs=2))
    assert not refit.run.multi_objective and refit.run.latency == both.run.latency  # still timed


@pytest.mark.usefixtures("search_cache")
@pytest.mark.parametrize("sampler", ["tpe", "gp"])
def test_tpe_and_gp_search_both_objectives_and_each_epoch_is_kept_for_the_curves(sampler, synthetic_data, tmp_path):
    from dataclasses import replace

    from search_fixtures import tiny_spec

    from search.engine.objective import Objective
    from search.study.samplers import build_sampler
    from search.testing import fake_fit

    spec = tiny_spec()
    from search.results.report.trials import curves

    limit = 1e6 if sampler == "tpe" else 0.0  # gp: no limit (it cannot learn one)
    spec = replace(spec, run=replace(spec.run, objectives=("mdice", "latency_ms"), max_latency_ms=limit,
                                     startup_trials=2, sampler=sampler))
    study = optuna.create_study(directions=spec.run.directions, sampler=build_sampler(sampler, spec, 0))
    study.optimize(Objective(spec, synthetic_data, tmp_path / "run", trainer=fake_fit, verbose=False), n_trials=3)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 3
    assert all(len(t.values) == 2 for t in study.trials)
    if limit:
        assert all(t.constraints["latency_ms"] < 0 for t in study.trials)
    record = TrialRecord.of(study.trials[0])
    assert sorted(record.intermediate) == list(range(1, spec.base.epochs + 1))  # each epoch, without Trial.report
    assert curves(study.trials[0]) and record.epochs == spec.base.epochs


def test_the_command_line_asks_for_both_objectives_and_untimed_trials_are_refused(tmp_path, synthetic_dir,
                                                                                          capsys):
    from search.run import main as run_main

    common = ["--study", str(_study_file(tmp_path, None)), "--run-dir", str(tmp_path / "runs"), "--data",
              str(synthetic_dir), "--trainer", "search.testing:fake_fit", "--quiet"]
    untimed = {table: dict(entries) for table, entries in TINY_STUDY.items()}
    untimed["run"]["latency"] = "none"
    assert run_main([*common[:0], "--study", str(write_study(tmp_path, untimed, "untimed.toml")), *common[2:],
                     "--objectives", "mdice", "latency_ms", "--n-trials", "1"]) == 2
    assert '--objectives: "latency_ms" needs the trials timed' in capsys.readouterr().err
    assert run_main([*common, "--objectives", "mdice", "latency_ms", "--n-trials", "2"]) == 0
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path / 'runs' / 'optuna.db'}")
    assert len(study.directions) == 2 and all(len(t.values) == 2 for t in study.trials)


def test_optuna_dashboard_serves_the_pareto_front_with_the_objectives_names(searched):
    import json
    from wsgiref.util import setup_testing_defaults

    from search.engine.artifacts import open_artifact_store
    from search.results.dashboard_app import dashboard_app

    study = searched["study"]
    app = dashboard_app(study._storage, open_artifact_store(searched["folder"] / "runs"))
    environ = {"PATH_INFO": f"/api/studies/{study._study_id}", "QUERY_STRING": "after=0"}
    setup_testing_defaults(environ)
    answer = {}
    body = b"".join(app(environ, lambda status, headers, exc_info=None: answer.update(status=status)))
    assert answer["status"].startswith("200"), answer
    detail = json.loads(body)
    assert len(detail["directions"]) == 2 and detail["objective_names"] == ["mdice", "latency_ms"]
    assert sorted(t["number"] for t in detail["best_trials"]) == sorted(t.number for t in study.best_trials)


def test_a_refit_of_a_two_objective_search_ranks_by_mdice_even_with_the_flag(searched, capsys):
    from search.refit import main as refit_main

    code = refit_main([*searched["common"], "--objectives", "mdice", "latency_ms", "--top", "1", "--seeds", "1",
                       "--image-size", "32", "--epochs", "1", "--trainer", "search.testing:fake_fit", "--quiet"])
    said = capsys.readouterr()
    assert code == 0, said.err
    assert "search.refit ranks its runs by the validation score alone" in said.err
    refit = optuna.load_study(study_name="tiny.refit", storage=f"sqlite:///{searched['folder'] / 'runs' / 'optuna.db'}")
    assert len(refit.directions) == 1 and [t.state.name for t in refit.trials] == ["COMPLETE"]
