"""search.bench: grid vs study on the same epoch budget (with the fake trainer: seconds).

Every test writes its own study and spreadsheet (bench's defaults are the shipped grid study and
hyperparameters.csv, which test_studies.py checks).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
from search_fixtures import TINY_STUDY, search_cache, write_study  # noqa: F401

from search import bench

BENCH_STUDY = copy.deepcopy(TINY_STUDY)  # LinkNet at 32 px, lr searched: TPE with the median pruner, as the grid study
BENCH_STUDY["study"]["name"] = "bench"
BENCH_STUDY["run"].update(data="synthetic", synthetic_count=20, val_fraction=0.1, sampler="tpe", pruner="median")
BENCH_STUDY["space"]["lr"] = {"low": 1e-4, "high": 1e-2, "log": True}
ROWS = """arch,encoder,encoder_depth,lr,loss,notes
linknet,resnet18,3,1e-4,bce+dice,a hand search below the fake trainer's best lr (3e-3)
linknet,resnet18,3,2e-4,dice,
linknet,resnet18,3,3e-4,bce+dice,
linknet,resnet18,3,5e-4,dice+focal,so the study can match the grid before the budget is spent
"""


@pytest.fixture
def bench_files(tmp_path: Path, search_cache: Path) -> list[str]:  # noqa: F811
    """The options naming this test's study (20 synthetic images) and four-row spreadsheet, and the fake trainer."""
    csv_path = tmp_path / "rows.csv"
    csv_path.write_text(ROWS)
    return ["--study", str(write_study(tmp_path, BENCH_STUDY)), "--csv", str(csv_path),
            "--trainer", "search.testing:fake_fit"]


def test_bench_prints_curves_and_the_ratio_line(bench_files, capsys):
    code = bench.main([*bench_files, "--rows", "4", "--epochs", "3"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.count("grid row") == 4
    budget = int(re.search(r"same budget of (\d+) epochs", out).group(1))
    assert budget == 12  # 4 rows x 3 epochs, none pruned
    spent = [int(m) for m in re.findall(r"spent\s+(\d+)", out)]
    assert spent == sorted(spent) and spent[-1] >= budget
    last = out.strip().splitlines()[-1]
    assert re.search(r"(\d+\.\d)x fewer epochs|did not match", last), last


def test_epochs_to_reach():
    curve = [(3, 0.2), (6, 0.5), (9, 0.5), (12, 0.7)]
    assert bench.epochs_to_reach(curve, 0.5) == 6
    assert bench.epochs_to_reach(curve, 0.7) == 12
    assert bench.epochs_to_reach(curve, 0.8) is None


def test_grid_results_are_reused_and_settings_overridden(tmp_path, bench_files, capsys):
    saved = tmp_path / "grid.json"
    args = [*bench_files, "--rows", "3", "--epochs", "3", "--grid-results", str(saved)]
    assert bench.main(args) == 0
    first = capsys.readouterr().out
    assert first.count("grid row") == 3 and saved.is_file()
    assert bench.main([*args, "--pruner", "sha", "--warmup-epochs", "1", "--startup-trials", "2",
                       "--pruner-startup-trials", "1"]) == 0
    second = capsys.readouterr().out
    assert "grid row" not in second and f"grid (from {saved})" in second
    assert "sha pruning, startup 2, pruner startup 1, warm-up 1" in second
    grid_best = re.search(r"grid:  best val mDice (\d\.\d+)", first).group(1)
    assert f"grid:  best val mDice {grid_best}" in second
    # another grid (other epochs) is not taken from the file
    assert bench.main([*args[:-4], "--epochs", "2", "--grid-results", str(saved)]) == 0
    assert capsys.readouterr().out.count("grid row") == 3


def test_until_matched_stops_the_study_once_it_matches(bench_files, capsys):
    assert bench.main([*bench_files, "--rows", "4", "--epochs", "3", "--until-matched"]) == 0
    out = capsys.readouterr().out
    last = out.strip().splitlines()[-1]
    if "fewer epochs" in last:
        needed = int(re.search(r"after (\d+) epochs against", last).group(1))
        spent = [int(m) for m in re.findall(r"spent\s+(\d+)", out)]
        assert spent[-1] == needed


def test_sampler_seed_changes_the_study_not_the_grid(tmp_path, bench_files, capsys):
    saved = tmp_path / "grid.json"
    args = [*bench_files, "--rows", "3", "--epochs", "2", "--grid-results", str(saved), "--sampler", "random"]
    runs = []
    for seed in (None, "0", "7"):
        assert bench.main(args + ([] if seed is None else ["--sampler-seed", seed])) == 0
        out = capsys.readouterr().out
        runs.append(re.findall(r"study trial\s+\d+: .*?best \d\.\d+\s+(.*)", out))
        if seed == "7":
            assert "sampler seed 7" in out and "grid row" not in out  # the same grid, from the file
    assert runs[0] == runs[1]  # the default is the study's seed (0)
    assert runs[2] != runs[0]


def test_val_fraction_sets_the_split_and_a_saved_grid_is_kept_to_its_split(tmp_path, bench_files, capsys):
    saved = tmp_path / "grid.json"
    args = [*bench_files, "--rows", "2", "--epochs", "2", "--grid-results", str(saved)]
    assert bench.main([*args, "--val-fraction", "0.25"]) == 0
    out = capsys.readouterr().out
    train, val, test = map(int, re.search(r"(\d+)/(\d+)/(\d+) at", out).groups())
    assert val == round(0.25 * (train + val + test)) and out.count("grid row") == 2
    assert bench.main(args) == 0  # the study's own val_fraction (0.1): another split, so the grid runs again
    out = capsys.readouterr().out
    assert out.count("grid row") == 2 and "holds another grid" in out


def test_a_val_fraction_leaving_nothing_to_compare_is_an_error(bench_files, capsys):
    for bad in ("0", "0.95"):
        assert bench.main([*bench_files, "--rows", "1", "--val-fraction", bad]) == 2
        assert "val_fraction" in capsys.readouterr().err


def test_bench_compares_one_objective_and_refuses_two(bench_files, capsys):
    assert bench.main([*bench_files, "--objectives", "mdice", "latency_ms"]) == 2
    assert "--objectives: search.bench compares a grid and a study by the best validation mDice" in capsys.readouterr().err
