"""Latency per frame (polyp.latency) and where a search keeps it: the trial, its note, trials.csv, the report."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from search_fixtures import search_cache, tiny_spec  # noqa: F401

import polyp.timing
from polyp.config import parse_config
from polyp.latency import Latency, config_latency, measure_latency
from polyp.models import build_model
from polyp.timing import median_ms
from search.engine.notes import note_markdown
from search.engine.objective import Objective
from search.engine.record import TrialRecord
from search.results.report.trials import write_trials_csv
from search.results.summary import summary_table
from search.study.definition import parse_study
from search.study.errors import StudyError
from search.testing import fake_fit

TINY = {"arch": "linknet", "encoder": "mobilenet_v2", "encoder_depth": 3, "encoder_weights": "none", "image_size": 32,
        "threads": 1, "device": "cpu"}


def test_the_median_of_the_timed_runs_counts_and_the_warm_up_is_not_timed(monkeypatch):
    durations = iter([100.0, 100.0, 0.003, 0.001, 0.002])  # two slow warm-up runs, then three timed ones
    now = [0.0]  # a clock that only the runs move

    def run():
        now[0] += next(durations)

    monkeypatch.setattr(polyp.timing.time, "perf_counter", lambda: now[0])
    assert median_ms(run, warmup=2, repeats=3) == pytest.approx(2.0)


def test_a_model_is_timed_with_pytorch_and_onnx_runtime_and_the_threads_are_put_back():
    model = build_model(parse_config(TINY))
    before = torch.get_num_threads()
    latency = measure_latency(model, 32, "cpu", threads=1)
    assert latency.torch_ms > 0 and latency.onnx_ms > 0 and latency.fastest_ms == min(latency.torch_ms, latency.onnx_ms)
    assert (latency.image_size, latency.device, latency.threads) == (32, "cpu", 1)
    assert torch.get_num_threads() == before
    assert measure_latency(model, 32, "cpu", onnx=False).onnx_ms is None


def test_a_deep_supervised_config_is_timed_as_the_model_it_predicts_with():
    from polyp.checkpoint import build_model_for
    from polyp.models.deep_supervision import DeepSupervisedUnetPlusPlus

    cfg = parse_config({**TINY, "arch": "unetplusplus", "deep_supervision": True})
    assert isinstance(build_model(cfg), DeepSupervisedUnetPlusPlus)
    assert not isinstance(build_model_for(cfg), DeepSupervisedUnetPlusPlus)  # what polyp.predict runs
    latency = config_latency(cfg)
    assert latency.torch_ms > 0 and latency.onnx_ms > 0


def test_the_latency_line_says_what_was_timed():
    assert Latency(41.23, 28.71, 256, "cpu", 2).describe() == (
        "41.2 ms per frame with PyTorch, 28.7 ms with ONNX Runtime (256 px, batch 1, cpu, 2 threads)")
    assert Latency(3.0, None, 64, "cpu", 1).describe() == "3.0 ms per frame with PyTorch (64 px, batch 1, cpu, 1 thread)"


def test_an_unknown_latency_mode_is_refused_with_its_key():
    with pytest.raises(StudyError, match=r"x.toml: \[run\].latency: 'fast' is not one of onnx, torch, none"):
        parse_study({"study": {"name": "x"}, "run": {"latency": "fast"}}, "x", "x.toml: ")


@pytest.mark.usefixtures("search_cache")
@pytest.mark.parametrize("mode", ["onnx", "none"])
def test_a_trial_keeps_its_latency_and_every_table_shows_it(mode, synthetic_data, tmp_path: Path):
    spec = tiny_spec()
    spec = replace(spec, run=replace(spec.run, latency=mode))
    study = optuna.create_study(direction="maximize")
    study.optimize(Objective(spec, synthetic_data, tmp_path / "run", trainer=fake_fit, verbose=False), n_trials=1)
    trial = study.trials[0]
    record = TrialRecord.of(trial)
    rows = list(csv.DictReader(write_trials_csv(study.trials, tmp_path / "trials.csv").open()))
    note = note_markdown(trial, {**trial.user_attrs, "latency": record.latency}, {})
    if mode == "none":
        assert record.latency == {} and record.latency_ms() is None and rows[0]["latency_torch_ms"] == ""
        assert "latency" not in note
        return
    assert record.latency_ms("torch") > 0 and record.latency_ms("onnx") > 0
    assert record.latency["image_size"] == spec.base.image_size and record.latency["threads"] == spec.base.threads
    assert float(rows[0]["latency_torch_ms"]) == record.latency_ms("torch")
    assert float(rows[0]["latency_onnx_ms"]) == record.latency_ms("onnx")
    assert f"latency: {record.latency_ms('torch'):.1f} ms per frame with PyTorch" in note
    training = (Path(record.output_dir) / "checkpoint" / "training.json").read_text()
    assert '"latency"' in training and '"onnx_ms"' in training


@pytest.mark.usefixtures("search_cache")
def test_the_summary_has_a_latency_column_when_trials_were_timed(synthetic_data, tmp_path: Path):
    spec = tiny_spec()

    class Fake:  # what summary_table reads of a session
        def __init__(self, study):
            self.study, self.spec, self.storage_url = study, spec, "sqlite:///x.db"

    study = optuna.create_study(direction="maximize")
    study.optimize(Objective(spec, synthetic_data, tmp_path / "run", trainer=fake_fit, verbose=False), n_trials=1)
    record = TrialRecord.of(study.trials[0])
    table = summary_table(Fake(study))
    assert "ms/frame torch/onnx" in table and f"{record.latency_ms('torch'):.1f}/–" in table  # tiny_spec: torch only


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    """An untrained LinkNet checkpoint folder with its model.onnx beside it, as search.export --onnx writes it."""
    from polyp.checkpoint import save_checkpoint
    from polyp.onnx_export import ONNX_FILE, export_onnx

    cfg = parse_config(TINY)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    folder = save_checkpoint(model, cfg, tmp_path_factory.mktemp("model") / "export")
    export_onnx(model, cfg.image_size, folder / ONNX_FILE)
    return folder


@pytest.mark.parametrize("with_graph", [True, False])
def test_onnx_runtime_predicts_as_pytorch_does_with_the_folders_graph_or_one_exported_in_memory(exported, with_graph,
                                                                                                tmp_path):
    import shutil

    from polyp.data.synthetic import make_sample
    from polyp.predict import OnnxPredictor, Predictor

    folder = exported
    if not with_graph:
        folder = tmp_path / "no-graph"
        shutil.copytree(exported, folder, ignore=shutil.ignore_patterns("model.onnx"))
    onnx, _ = Predictor.from_folder(folder, runtime="onnx")
    plain, _ = Predictor.from_folder(folder, precision="fp32")
    assert isinstance(onnx, OnnxPredictor) and onnx.graph == (str(folder / "model.onnx") if with_graph else
                                                              "exported in memory")
    images = [make_sample(seed=seed, size=size)[0] for seed, size in ((1, 40), (2, 57))]
    for ours, theirs in zip(onnx.probabilities(images, tta="flip"), plain.probabilities(images, tta="flip"), strict=True):
        assert ours.shape == theirs.shape and np.abs(ours - theirs).max() < 1e-4


def test_polyp_predict_and_serve_take_the_runtime_and_refuse_onnx_on_a_gpu(exported, tmp_path, capsys):
    import polyp.predict
    from polyp.data import write_synthetic
    from polyp.errors import PolypError
    from polyp.predict import Predictor

    photos = write_synthetic(tmp_path / "photos", count=2, size=40)
    assert polyp.predict.main(["--model", str(exported), "--input", str(photos / "images"), "--out", str(tmp_path / "a"),
                               "--runtime", "onnx", "--gradcam"]) == 0  # Grad-CAM uses the PyTorch model beside it
    assert sorted(p.name for p in (tmp_path / "a").iterdir())[:3] == [
        "synth_0000_gradcam.png", "synth_0000_mask.png", "synth_0000_overlay.png"]
    with pytest.MonkeyPatch.context() as patch:  # as on a machine with a GPU
        patch.setattr(torch.cuda, "is_available", lambda: True)
        with pytest.raises(PolypError, match="--runtime onnx runs on the CPU, not on cuda"):
            Predictor.from_folder(exported, device="cuda", runtime="onnx")
    with pytest.raises(SystemExit):
        polyp.predict.main(["--model", str(exported), "--input", str(photos), "--out", str(tmp_path / "b"),
                            "--runtime", "tensorrt"])
    assert "invalid choice: 'tensorrt'" in capsys.readouterr().err


def test_auto_keeps_the_runtime_that_is_faster_here_and_says_so(exported, monkeypatch):
    from polyp.predict import OnnxPredictor, Predictor

    for slower in ("onnx", "torch"):
        def frame_ms(self, runs=5, slower=slower):
            return 10.0 if self.runtime == slower else 5.0

        monkeypatch.setattr(Predictor, "frame_ms", frame_ms)
        predictor, _ = Predictor.from_folder(exported, runtime="auto")
        faster = "torch" if slower == "onnx" else "onnx"
        assert predictor.runtime == faster and isinstance(predictor, OnnxPredictor) == (faster == "onnx")
        torch_ms, onnx_ms = (5.0, 10.0) if faster == "torch" else (10.0, 5.0)
        assert predictor.runtime_note == (f"runtime {faster} (--runtime auto: {torch_ms:.1f} ms per frame with PyTorch, "
                                          f"{onnx_ms:.1f} ms with ONNX Runtime on this machine)")
    monkeypatch.undo()
    predictor, _ = Predictor.from_folder(exported, runtime="auto")  # really timed: either, with its figures
    assert predictor.runtime in ("torch", "onnx") and "ms with ONNX Runtime on this machine" in predictor.runtime_note


def test_a_latency_limit_must_be_positive_and_needs_the_trials_timed():
    with pytest.raises(StudyError, match=r"\[run\].max_latency_ms: -1 is negative"):
        parse_study({"study": {"name": "x"}, "run": {"max_latency_ms": -1}}, "x", "x.toml: ")
    with pytest.raises(StudyError, match=r"\[run\].max_latency_ms: needs the trials timed"):
        parse_study({"study": {"name": "x"}, "run": {"max_latency_ms": 33, "latency": "none"}}, "x", "x.toml: ")
    assert parse_study({"study": {"name": "x"}, "run": {"max_latency_ms": 33}}, "x", "x.toml: ").run.max_latency_ms == 33


def _never_trains(cfg, data, reporter=None, **kwargs):
    raise AssertionError("a model over the latency limit was trained")


@pytest.mark.usefixtures("search_cache")
def test_a_model_over_the_limit_is_pruned_before_it_trains_and_an_unreachable_limit_is_said(synthetic_data, tmp_path,
                                                                                             capsys):
    from search.engine.trial_loop import trial_line

    spec = tiny_spec()
    spec = replace(spec, run=replace(spec.run, max_latency_ms=0.001, startup_trials=3))
    study = optuna.create_study(direction="maximize")
    study.optimize(Objective(spec, synthetic_data, tmp_path / "run", trainer=_never_trains, verbose=False), n_trials=4)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.PRUNED] * 4
    record = TrialRecord.of(study.trials[0])
    assert record.status == "too_slow" and record.reason == (
        f"{record.fastest_ms:.1f} ms per frame is over max_latency_ms 0.001: not trained")
    assert "pruned before training: " in trial_line(study, study.trials[0])
    said = capsys.readouterr().err
    assert said.count("note: none of the 3 models timed so far runs within max_latency_ms 0.001") == 1, said

    generous = replace(spec, run=replace(spec.run, max_latency_ms=1e6))
    study = optuna.create_study(direction="maximize")
    study.optimize(Objective(generous, synthetic_data, tmp_path / "run2", trainer=fake_fit, verbose=False), n_trials=1)
    assert study.trials[0].state == optuna.trial.TrialState.COMPLETE


@pytest.mark.usefixtures("search_cache")
def test_the_latency_limit_is_each_trials_optuna_constraint(synthetic_data, tmp_path):
    spec = tiny_spec()
    for limit, over in ((1e6, False), (0.001, True)):
        limited = replace(spec, run=replace(spec.run, max_latency_ms=limit))
        study = optuna.create_study(direction="maximize")
        study.optimize(Objective(limited, synthetic_data, tmp_path / "run", trainer=fake_fit, verbose=False), n_trials=1)
        trial = study.trials[0]
        assert trial.constraints == {"latency_ms": pytest.approx(TrialRecord.of(trial).fastest_ms - limit)}
        assert (trial.constraints["latency_ms"] > 0) == over


def test_the_pareto_front_keeps_the_trials_nothing_beats_on_both():
    from search.results.report.speed import SpeedPoint, pareto_front

    points = [SpeedPoint(n, value, ms, "onnx", "") for n, value, ms in
              ((0, 0.80, 10.0), (1, 0.85, 20.0), (2, 0.84, 25.0), (3, 0.90, 40.0), (4, 0.79, 12.0), (5, 0.85, 20.0))]
    assert [p.number for p in pareto_front(points)] == [0, 1, 3]


def test_export_with_a_latency_limit_takes_the_best_model_within_it():
    from search.results.checkpoint_export import fastest_enough

    study = optuna.create_study(direction="maximize")
    for value, ms in ((0.90, 50.0), (0.85, 30.0), (0.80, 10.0)):
        trial = study.ask()
        trial.set_user_attr("latency", {"torch_ms": ms, "onnx_ms": None})
        study.tell(trial, value)
    assert fastest_enough(study, 33).number == 1 and fastest_enough(study, 100).number == 0
    with pytest.raises(StudyError, match="no complete trial .* runs within it; the fastest is trial 2 at 10.0 ms"):
        fastest_enough(study, 5)


def test_a_refit_trains_its_configurations_whatever_their_speed():
    from search.study.definition import RefitSettings, refit_study

    spec = tiny_spec()
    limited = replace(spec, run=replace(spec.run, max_latency_ms=33.0))
    refit = refit_study(limited, RefitSettings(top=1, seeds=1, image_size=64, epochs=2))
    assert refit.run.max_latency_ms == 0 and refit.run.latency == limited.run.latency  # still timed, never pruned


def test_gp_cannot_learn_a_latency_limit_and_is_refused():
    from search.study.samplers import build_sampler

    with pytest.raises(StudyError, match=r"\[run\].max_latency_ms: sampler 'gp' cannot learn a latency limit"):
        parse_study({"study": {"name": "x"}, "run": {"max_latency_ms": 33, "sampler": "gp", "pruner": "none"}}, "x",
                    "x.toml: ")
    spec = tiny_spec()
    with pytest.raises(StudyError, match="--sampler gp with max_latency_ms 33"):  # the flag given on a study with a limit
        build_sampler("gp", replace(spec, run=replace(spec.run, max_latency_ms=33.0)), 0)


@pytest.mark.usefixtures("search_cache")
def test_going_on_with_a_study_under_another_latency_limit_is_refused(synthetic_dir, tmp_path, capsys):
    from search_fixtures import TINY_STUDY, write_study

    from search.run import main as run_main

    def study_file(limit: float) -> Path:  # the same study (name "tiny"), with this limit
        tables = {table: dict(entries) for table, entries in TINY_STUDY.items()}
        tables["run"]["max_latency_ms"] = limit
        return write_study(tmp_path, tables, f"limit-{limit:g}.toml")

    common = ["--run-dir", str(tmp_path / "runs"), "--data", str(synthetic_dir), "--trainer", "search.testing:fake_fit",
              "--quiet"]
    assert run_main(["--study", str(study_file(1e6)), "--n-trials", "1", *common]) == 0
    assert run_main(["--study", str(study_file(5.0)), "--n-trials", "2", *common]) == 2
    assert "its trials ran under max_latency_ms 1e+06, now 5 (0: no limit)" in capsys.readouterr().err


def test_auto_falls_back_to_pytorch_when_onnx_runtime_cannot_run_the_model(exported, monkeypatch):
    from polyp.predict import OnnxPredictor, Predictor

    def broken(self, *args, **kwargs):
        raise RuntimeError("Unsupported ONNX opset")

    monkeypatch.setattr(OnnxPredictor, "__init__", broken)
    predictor, _ = Predictor.from_folder(exported, runtime="auto")
    assert predictor.runtime == "torch"
    assert predictor.runtime_note == "runtime torch (--runtime auto: ONNX Runtime cannot run this model: Unsupported ONNX opset)"
