"""The search commands print bad input as one-line errors and let bugs show their tracebacks."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_study import FakeStudy, shared_study

import search.results.checkpoint_export
import search.results.report.study_report
from search.analyze import main as analyze_main
from search.export import main as export_main


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> FakeStudy:
    return shared_study(tmp_path_factory)


def _broken(*args, **kwargs):
    raise ValueError("an internal bug, not bad input")


@pytest.fixture
def cache(study: FakeStudy, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLYP_CACHE", str(study.cache))


@pytest.mark.usefixtures("cache")
def test_a_bug_in_report_writing_shows_its_traceback(study: FakeStudy, tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setattr(search.results.report.study_report, "loss_curves_png", _broken)
    with pytest.raises(ValueError, match="an internal bug"):
        analyze_main(["--study", str(study.toml), "--run-dir", str(study.run_dir), "--top", "1"])
    assert "error: an internal bug" not in capsys.readouterr().err


@pytest.mark.usefixtures("cache")
def test_a_bug_in_the_export_shows_its_traceback(study: FakeStudy, tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setattr(search.results.checkpoint_export, "save_checkpoint", _broken)
    with pytest.raises(ValueError, match="an internal bug"):
        export_main(["--study", str(study.toml), "--run-dir", str(study.run_dir), "--out", str(tmp_path / "model")])
    assert "error: an internal bug" not in capsys.readouterr().err


@pytest.mark.usefixtures("cache")
def test_bad_input_is_still_a_one_line_error(study: FakeStudy, tmp_path: Path, capsys):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    code = export_main(["--study", str(study.toml), "--run-dir", str(study.run_dir), "--out", str(tmp_path / "taken")])
    errors = capsys.readouterr().err
    assert code == 2 and errors.startswith("error: --out ") and "holds other files" in errors
    assert analyze_main(["--study", "no-such-study", "--run-dir", str(study.run_dir)]) == 2
    assert "unknown study 'no-such-study'" in capsys.readouterr().err
