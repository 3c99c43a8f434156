"""search.auto: budgets, the plan, the clock that holds it, and the whole command on synthetic images with a fake
trainer (real step timing at 32-64 px, real export, scoring and model card)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import fake_trainers
import optuna
import pytest
from search_fixtures import TINY_STUDY, fast_pictures, search_cache, tiny_spec, write_study  # noqa: F401

import search.planning.clock as clock_module
from polyp.config import TrainConfig
from search import auto
from search.engine.objective import Objective
from search.engine.record import TrialRecord
from search.planning.budget import format_duration, parse_budget
from search.planning.clock import DeadlineReporter, StageBudget, StageClock
from search.planning.plan import Costs, check_budget, make_plan
from search.planning.state import RunState
from search.planning.step_times import StepTimes, measure
from search.study.errors import CommandLineError
from search.testing import FakeTrainer

pytestmark = pytest.mark.usefixtures("search_cache", "fast_pictures")  # in-process trials draw no pictures
SIZES = [128, 160, 192, 224, 256, 288, 320, 352]


@pytest.mark.parametrize(("text", "seconds"), [("90m", 5400), ("2h", 7200), ("1h30m", 5400), ("45s", 45),
                                               ("5400", 5400), (" 2H ", 7200), ("1.5h", 5400), ("1h0m30s", 3630)])
def test_budget_forms_people_write_are_read(text, seconds):
    assert parse_budget(text) == seconds


@pytest.mark.parametrize("text", ["2hours", "1h30", "", "h", "-5", "0", "2 days", "m30"])
def test_a_badly_written_budget_is_refused_with_the_accepted_forms(text):
    with pytest.raises(CommandLineError, match=r"90m, 2h, 1h30m"):
        parse_budget(text)


def test_durations_print_in_hours_minutes_seconds():
    assert (format_duration(7200), format_duration(725), format_duration(0)) == ("2h", "12m 5s", "0s")


def kvasir_costs(correction: float = 1.0) -> Costs:
    times = StepTimes(128, {("unetplusplus", "lite0"): 0.03, ("linknet", "lite0"): 0.012, ("fpn", "lite1"): 0.015},
                      {size: (size / 128) ** 2 for size in SIZES}, 0.0)
    return Costs(times, train_images=800, val_images=100, correction=correction)


def test_a_larger_budget_plans_more_trials_and_a_larger_final_size_within_the_budget():
    small, large = (make_plan(budget, 60.0, kvasir_costs(), SIZES) for budget in (1800, 7200))
    assert [s.name for s in large.stages] == ["s1", "s2", "s3"]
    assert large.stage("s1").trials > small.stage("s1").trials
    assert large.stage("s3").image_size > small.stage("s3").image_size
    for plan in (small, large):
        assert plan.stage("s2").image_size > plan.stage("s1").image_size
        assert plan.spent + sum(s.seconds for s in plan.stages) + plan.deliver <= plan.budget + 1e-6
        assert any("adds up to" in line for line in plan.lines())


def test_stages_that_ran_long_leave_less_to_the_later_ones():
    on_time = make_plan(7200, {"timing": 60, "s1": 1700}, kvasir_costs(), SIZES, done={"s1"},
                        fixed={"s1": make_plan(7200, 60, kvasir_costs(), SIZES).stage("s1")})
    late = make_plan(7200, {"timing": 60, "s1": 3600}, kvasir_costs(), SIZES, done={"s1"},
                     fixed={"s1": make_plan(7200, 60, kvasir_costs(), SIZES).stage("s1")})
    assert [s.name for s in late.stages] == ["s2", "s3"]
    assert late.stage("s3").seconds < on_time.stage("s3").seconds
    assert late.stage("s3").image_size <= on_time.stage("s3").image_size
    slower = make_plan(7200, {"timing": 60, "s1": 1700}, kvasir_costs(correction=2.0), SIZES, done={"s1"},
                       fixed={"s1": on_time.stage("s2")})  # trials measured twice as slow as estimated
    assert slower.stage("s3").image_size < on_time.stage("s3").image_size


def test_a_resumed_plan_adds_up_what_a_begun_stage_has_left_not_its_whole_share():
    first = make_plan(7200, 60.0, kvasir_costs(), SIZES)
    resumed = make_plan(7200, {"timing": 60.0, "s1": 600.0}, kvasir_costs(), SIZES, fixed={"s1": first.stage("s1")})
    assert resumed.lines()[-1] == first.lines()[-1] == "  adds up to 120.0 min of 120.0 min"


def test_a_budget_too_small_for_the_stages_is_refused_with_the_time_it_needs():
    with pytest.raises(CommandLineError, match=r"--budget 1m: too small.*need at least \d+m"):
        check_budget(60, 0.0, kvasir_costs(), SIZES)
    check_budget(7200, 60.0, kvasir_costs(), SIZES)


def test_step_times_are_timed_once_and_cached():
    calls = []

    def timer(cfg: TrainConfig) -> float:
        calls.append((cfg.arch, cfg.image_size))
        return 0.001 * (2 if cfg.arch == "unet" else 1) * (cfg.image_size / 64) ** 2

    models = [("unet", "resnet18"), ("linknet", "resnet18")]
    base = TrainConfig(encoder_weights="none", device="cpu")
    first = measure(models, base, [64, 96, 128], timer=timer, emit=lambda line: None)
    assert sorted(calls) == [("linknet", 64), ("unet", 64), ("unet", 96), ("unet", 128)]  # the slowest at every size
    assert first.scale[128] == pytest.approx(4.0)
    assert first.seconds_per_image("linknet", "resnet18", 128) == pytest.approx(0.004)
    again = measure(models, base, [64, 96, 128], timer=timer, emit=lambda line: None)
    assert len(calls) == 4 and again.seconds == 0.0 and again.per_image == first.per_image


def stage_clock(seconds_left: float) -> StageClock:
    clock = StageClock(RunState(optuna.create_study()), "s1", 100.0, 1000.0)
    clock.deadline = time.time() + seconds_left
    return clock


def test_a_running_trial_stops_after_the_epoch_past_which_another_would_overrun():
    reporter = DeadlineReporter(stage_clock(30.0), epochs=4)
    assert reporter.on_epoch_end(1, {"seconds": 5.0}) is False
    assert reporter.on_epoch_end(2, {"seconds": 30.0}) is True
    assert "stopped after epoch 2 of 4" in reporter.reason and "stage s1" in reporter.reason
    assert DeadlineReporter(stage_clock(0.0), epochs=2).on_epoch_end(2, {"seconds": 9.0}) is False  # the last epoch


def test_a_trial_that_cannot_train_one_epoch_in_time_is_pruned_before_training_with_its_reason():
    study = optuna.create_study()
    trial = study.ask()
    budget = StageBudget(stage_clock(10.0), first_epoch=lambda cfg: 60.0)
    with pytest.raises(optuna.TrialPruned, match="not trained: its first epoch needs about"):
        budget.start(trial, TrainConfig())
    assert trial.user_attrs["status"] == "over_budget"


@pytest.mark.parametrize(("keeps_stopped", "state"), [(False, "PRUNED"), (True, "COMPLETE")])
def test_the_budget_prunes_a_search_trial_and_lets_a_refit_run_keep_its_best_epoch(
        tmp_path, synthetic_data, monkeypatch, keeps_stopped, state):
    monkeypatch.setattr(clock_module, "TAIL_S", 0.0)
    spec = tiny_spec()  # 3 epochs of 0.6 s against 1 s left: one epoch, then another would overrun
    budget = StageBudget(stage_clock(1.0), first_epoch=lambda cfg: 0.0, keeps_stopped=keeps_stopped)
    objective = Objective(spec, synthetic_data, tmp_path, trainer=FakeTrainer(epoch_seconds=0.6), verbose=False,
                          budget=budget)
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
    study.optimize(objective, n_trials=1)
    trial = study.trials[0]
    record = TrialRecord.of(trial)
    assert trial.state.name == state
    assert record.status == "over_budget" and "stopped after epoch 1 of 3" in record.reason
    assert (tmp_path / "tiny" / "trial-0" / "checkpoint").is_dir() == keeps_stopped


def auto_args(tmp_path: Path, study: Path, data: Path, *extra: str, budget: str = "3m") -> list[str]:
    return ["--data", str(data), "--study", str(study), "--budget", budget, "--out", str(tmp_path / "run"),
            "--max-image-size", "64", "--quiet", "--trainer", "search.testing:fake_fit", *extra]


@pytest.fixture
def auto_study(tmp_path: Path) -> Path:
    tables = {table: dict(entries) for table, entries in TINY_STUDY.items()}
    tables["space"]["arch"] = ["linknet", "unet"]
    tables["train"].pop("arch")
    return write_study(tmp_path, tables, "tiny.toml")


def test_search_auto_goes_on_after_ctrl_c_and_delivers_a_model_its_scores_and_card_within_the_budget(
        tmp_path, auto_study, synthetic_dir, capsys):
    fake_trainers.ctrl_c_on_call_3.reset()
    args = [*auto_args(tmp_path, auto_study, synthetic_dir)[:-2], "--eval-data", f"other={synthetic_dir}",
            "--trainer", "search.testing:fake_fit"]
    run = tmp_path / "run"
    storage = f"sqlite:///{run / 'optuna.db'}"
    started = time.monotonic()
    assert auto.main([*args[:-1], "fake_trainers:ctrl_c_on_call_3"]) == 130  # Ctrl-C in stage 1's third trial
    assert "run the same command again" in capsys.readouterr().err
    s1 = optuna.load_study(study_name="tiny.s1", storage=storage)
    assert [t.state.name for t in s1.trials].count("FAIL") == 1 and s1.user_attrs["auto_spent"]["s1"] > 0

    assert auto.main(args) == 0  # the same command goes on
    wall = time.monotonic() - started
    out = capsys.readouterr().out
    assert "plan for a budget of 3m" in out and "auto s1: trial" in out and "auto: s3  refit" in out
    assert {"model.onnx", "model.safetensors", "config.json", "training.json"} <= {p.name for p in (run / "model").iterdir()}
    facts = json.loads((run / "model" / "training.json").read_text())
    assert facts["auto"]["chosen_by"] == "validation only" and facts["auto"]["tta"] in ("none", "flip", "d4")
    assert "onnx_ms" in facts["latency"]
    card = (run / "MODEL_CARD.md").read_text()
    for section in ("Intended use and limits", "## Data", "why it was chosen", "Spearman", "mDice over thresholds",
                    "Reliability", "Latency on this machine", "## Budget", "segmentation-models-pytorch"):
        assert section in card
    assert "data:image/png;base64" in (run / "model_card.html").read_text()
    assert "test only (--eval-data" in card and "| other |" in card
    summary = (run / "evaluation" / "summary.csv").read_text()
    assert summary.startswith("data set,images,mDice") and "\nother," in summary
    assert "auto s3: trial" in (run / "progress.log").read_text()
    s1 = optuna.load_study(study_name="tiny.s1", storage=storage)
    assert sum(s1.user_attrs["auto_spent"].values()) <= 180 * 1.05 and wall <= 180 * 1.05
    assert {"tiny.s1", "tiny.s2", "tiny.refit"} <= {s.study_name for s in optuna.get_all_study_summaries(storage)}

    assert auto.main(args) == 0  # a finished run says where its model is
    assert f"its model is {run / 'model'}" in capsys.readouterr().out


@pytest.mark.parametrize(("change", "named"), [(["--max-image-size", "96"], "max_image_size"),
                                               (["--seed", "3"], "seed")])
def test_a_rerun_with_other_inputs_is_refused_naming_what_differs(tmp_path, auto_study, synthetic_dir,
                                                                   capsys, change, named):
    args = auto_args(tmp_path, auto_study, synthetic_dir, budget="5s")  # refused as too small, after it stored its inputs
    assert auto.main(args) == 2
    assert "too small" in capsys.readouterr().err
    changed = [*args[:args.index("--max-image-size")], *args[args.index("--max-image-size") + 2:], *change]
    if named == "seed":
        changed += ["--max-image-size", "64"]
    assert auto.main(changed) == 2
    err = capsys.readouterr().err
    assert named in err and "before" in err and "another --out" in err


def test_each_tta_mode_is_the_mean_of_its_own_passes_among_d4s(tmp_path):
    import numpy as np
    import torch

    from polyp.models import build_model
    from polyp.predict import Predictor
    from search.planning.choice import FROM_D4

    torch.manual_seed(0)
    model = build_model(TrainConfig(arch="linknet", encoder="resnet18", encoder_depth=3, encoder_weights="none"))
    predictor = Predictor(model, 32, precision="fp32", channels_last=False)
    image = np.random.default_rng(0).integers(0, 255, (40, 56, 3), dtype=np.uint8)
    passes = predictor.pass_probabilities([image], "d4")
    for mode, chosen in FROM_D4.items():
        mean = np.mean([passes[k][0] for k in chosen], axis=0)
        assert np.allclose(mean, predictor.probabilities([image], mode)[0], atol=1e-5), mode


def test_a_stage_ends_when_not_even_the_fastest_model_can_train_an_epoch_in_what_is_left():
    clock = stage_clock(10.0)
    slow_only = StageBudget(clock, first_epoch=lambda cfg: 60.0, fastest_epoch=1.0)
    with pytest.raises(optuna.TrialPruned):
        slow_only.start(optuna.create_study().ask(), TrainConfig())
    assert not clock.over()  # a faster model may still fit
    with pytest.raises(optuna.TrialPruned):
        StageBudget(clock, first_epoch=lambda cfg: 60.0, fastest_epoch=60.0).start(optuna.create_study().ask(),
                                                                                   TrainConfig())
    assert clock.over()


def test_a_rerun_with_a_larger_budget_gives_the_unfinished_stage_its_share_of_the_difference():
    state = RunState(optuna.create_study())
    plan = make_plan(3600, 60.0, kvasir_costs(), SIZES)
    for stage in plan.stages[:2]:
        state.record_stage(stage)
    state.mark_done("s1")
    auto.grow_begun_stage(state, 3600)
    auto.grow_begun_stage(state, 7200)
    grown = state.stages()
    assert grown["s1"].seconds == plan.stage("s1").seconds  # finished: as it was
    assert grown["s2"].seconds == pytest.approx(plan.stage("s2").seconds + 3600 * 0.20)


def test_stage_2_takes_the_best_third_of_stage_1_pruned_trials_included():
    from types import SimpleNamespace

    from search.planning.stages import stage2_sources

    study = optuna.create_study(direction="maximize")
    for values, state in (({1: 0.1, 4: 0.3}, "complete"), ({1: 0.7, 3: 0.8}, "pruned"), ({1: 0.5}, "pruned"),
                          ({1: 0.6, 4: 0.75}, "complete"), ({1: 0.2}, "pruned"), ({1: 0.65, 3: 0.7}, "pruned")):
        trial = study.ask()
        for epoch, value in values.items():
            trial.report(value, epoch)
        if state == "complete":
            study.tell(trial, max(values.values()))
        else:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    chosen = stage2_sources(SimpleNamespace(study=study, spec=SimpleNamespace(name="tiny.s1")))
    assert [t.number for t in chosen] == [1, 3]


def test_workers_side_by_side_plan_more_search_trials_and_fill_idle_workers_with_seeds():
    one, two = (make_plan(3600, 60.0, kvasir_costs(), SIZES, workers=workers) for workers in (1, 2))
    assert two.stage("s1").trials > one.stage("s1").trials
    assert two.stage("s3").image_size >= one.stage("s3").image_size
    assert any("2 workers side by side" in line for line in two.lines())
    six = make_plan(7200, 60.0, kvasir_costs(), [128, 160], workers=6)  # 2 configurations, 6 workers: 3 seeds
    assert six.stage("s3").seeds == 3 and six.stage("s3").trials == 2
    assert make_plan(7200, 60.0, kvasir_costs(), [128, 160]).stage("s3").seeds == 2
    from search.planning.plan import wall_seconds

    assert wall_seconds([3.0, 3.0, 2.0, 2.0], 2) == 5.0 and wall_seconds([3.0, 1.0], 4) == 3.0


def test_stage_workers_get_the_stage_its_deadline_and_their_share_of_the_machine(monkeypatch):
    from search.engine.workers import plan_workers
    from search.planning.stage_workers import StageWorkers

    argv = ["--data", "synthetic", "--budget", "1h", "--out", "runs/a", "--workers", "2"]
    workers = StageWorkers(plan_workers(2, None, "cpu", argv, TrainConfig(), cpu_count=4))
    commands = workers.commands("s2", 1234.5)
    assert workers.count == 2 and workers.threads(0) == 2
    for line in commands.argv:
        assert line[-4:] == ["--stage-worker", "s2", "--stage-deadline", "1234.500"]
        assert line.count("--workers") == 1 and line[line.index("--workers") + 1] == "1"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    gpus = StageWorkers(plan_workers(2, "cuda:0,cuda:1", None, argv, TrainConfig(), cpu_count=4))
    assert [env["CUDA_VISIBLE_DEVICES"] for env in gpus.plan.environments] == ["0", "1"]
    assert gpus.threads(0) == 0 and "--device" in gpus.plan.argv[0]


def test_stage_workers_stop_the_run_on_ctrl_c_and_bad_input_but_go_on_after_one_dies(monkeypatch, capsys):
    import search.planning.stage_workers as stage_workers
    from search.engine.workers import WorkerPlan

    workers = stage_workers.StageWorkers(WorkerPlan([["--workers", "1"]] * 2, [{}, {}]))
    started = []
    for code, raised in ((130, KeyboardInterrupt), (2, CommandLineError)):
        monkeypatch.setattr(stage_workers, "run_workers", lambda module, plan, c=code: started.append(plan) or c)
        with pytest.raises(raised):
            workers.run("s1", 0.0)
    monkeypatch.setattr(stage_workers, "run_workers", lambda module, plan: started.append(plan) or 1)
    workers.run("s2", 0.0, most=1)
    assert "a worker ended badly" in capsys.readouterr().err and len(started[-1].argv) == 1
    workers.run("s3", 0.0, most=0)  # nothing waits: no worker starts
    assert len(started) == 3


def test_a_workers_clock_keeps_the_commands_deadline_and_saves_what_the_stage_spent():
    from search.planning.clock import WorkerClock

    state = RunState(optuna.create_study())
    clock = WorkerClock(state, "s1", 100.0, 1000.0, deadline=time.time() + 40.0)
    assert 39.0 < clock.left() <= 40.0 and 59.0 < clock.elapsed() <= 61.0
    clock.save()  # as the command's clock would: 100 s share, 40 s left
    assert 59.0 < state.spent()["s1"] <= 61.0


def test_a_stage_worker_started_by_hand_before_its_stage_is_refused(tmp_path, auto_study, synthetic_dir, capsys):
    args = auto_args(tmp_path, auto_study, synthetic_dir)
    assert auto.main([*args, "--stage-worker", "s2", "--stage-deadline", "1"]) == 2
    assert "has not begun stage s2" in capsys.readouterr().err


@pytest.mark.slow  # six worker processes (two per stage), each importing torch
def test_search_auto_with_two_workers_shares_each_stage_and_delivers_within_the_budget(
        tmp_path, auto_study, synthetic_dir, capsys, monkeypatch):
    from search_fixtures import worker_env

    import search.planning.plan as plan_module

    monkeypatch.setenv("PYTHONPATH", worker_env()["PYTHONPATH"])
    monkeypatch.setattr(plan_module, "MAX_S1_TRIALS", 4)  # the command plans; the workers read the plan
    started = time.monotonic()
    args = [*auto_args(tmp_path, auto_study, synthetic_dir)[:-1], "fake_trainers:epochs_500ms", "--workers", "2"]
    assert auto.main(args) == 0  # half-second epochs: both workers take trials
    wall = time.monotonic() - started
    out = capsys.readouterr().out
    assert "2 workers side by side" in out and out.count("started 2 workers") == 3
    assert "[worker 1] auto s1: trial" in out and "[worker 2]" in out and "auto deliver: chose" in out
    storage = f"sqlite:///{tmp_path / 'run' / 'optuna.db'}"
    s1 = optuna.load_study(study_name="tiny.s1", storage=storage)
    assert len(s1.trials) == 4 and len({TrialRecord.of(t).worker for t in s1.trials}) == 2
    refit = optuna.load_study(study_name="tiny.refit", storage=storage)
    assert refit.trials and all(t.state.name == "COMPLETE" for t in refit.trials)
    assert sum(s1.user_attrs["auto_spent"].values()) <= 180 * 1.05 and wall <= 180 * 1.05
    assert (tmp_path / "run" / "model" / "model.onnx").is_file() and (tmp_path / "run" / "MODEL_CARD.md").is_file()


def test_the_choice_leaves_out_a_candidate_whose_scoring_would_pass_the_budget():
    from search.planning.choice import Candidate, pick

    single, pair = Candidate("single", (3,)), Candidate("top", (3, 4))
    scores = [{"kind": c.kind, "runs": list(c.runs), "tta": tta, "threshold": 0.5, "val_mdice": value, "candidate": c}
              for c, tta, value in ((single, "none", 0.80), (single, "d4", 0.83), (pair, "d4", 0.86))]
    assert pick(scores).candidate == pair and pick(scores).left_out == 0
    fits_d4 = pick(scores, scored_images=100, seconds=(0.01, 55.0))  # export 45 s a model; 8 s of d4 passes, 16 s
    assert (fits_d4.candidate, fits_d4.tta, fits_d4.left_out) == (single, "d4", 1)
    assert "1 costlier candidate left out" in fits_d4.describe()
    nothing_fits = pick(scores, scored_images=100, seconds=(0.01, 0.0))
    assert pick(scores, scored_images=100, seconds=(0.01, 106.0)).candidate == pair  # 2 x 45 s + 16 s
    assert (nothing_fits.candidate, nothing_fits.tta) == (single, "none")


def test_many_images_to_score_make_the_delivery_reserve_more_and_the_stages_less():
    few = make_plan(3600, 60.0, kvasir_costs(), SIZES)
    many = make_plan(3600, 60.0, Costs(kvasir_costs().times, 800, 100, scored_images=3000), SIZES)
    assert few.deliver == pytest.approx(0.06 * 3600)
    assert many.deliver > few.deliver and many.stage("s3").seconds < few.stage("s3").seconds
    assert many.spent + sum(s.seconds for s in many.stages) + many.deliver <= 3600 + 1e-6
    with pytest.raises(CommandLineError, match="too small"):  # the delivery alone would not fit
        check_budget(3600, 60.0, Costs(kvasir_costs().times, 800, 100, scored_images=200000), SIZES)


def test_stage_2_trains_fewer_configurations_larger_rather_than_all_at_stage_1s_size():
    from search.planning.plan import stage2

    model = ("unetplusplus", "lite0")  # 6 epochs at 160 px: about 278 s a run
    tight = stage2(700.0, kvasir_costs(), SIZES, [model] * 4)
    assert (tight.trials, tight.image_size, tight.epochs) == (2, 160, 6)
    roomy = stage2(1200.0, kvasir_costs(), SIZES, [model] * 4)
    assert (roomy.trials, roomy.image_size, roomy.epochs) == (4, 160, 6)
    too_tight = stage2(200.0, kvasir_costs(), SIZES, [model] * 4)
    assert too_tight.trials == 4 and too_tight.epochs < 6
