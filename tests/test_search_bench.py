"""search.bench: grid vs study on the same epoch budget (with the fake trainer: seconds)."""

from __future__ import annotations

import re

from search import bench


def test_bench_prints_curves_and_the_ratio_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("POLYP_CACHE", str(tmp_path / "cache"))
    code = bench.main(["--trainer", "search.testing:fake_fit", "--rows", "4", "--epochs", "3"])
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
