"""One meaning per flag: --run-dir is the run folder on every search command and is found from the study when
it is not given; --out is the product folder of search.export; the old `--out` spelling of the run folder still
works on the other commands, with a note."""

from __future__ import annotations

import copy
from pathlib import Path

import optuna
import pytest
from search_fixtures import TINY_STUDY, fast_pictures, search_cache, write_study  # noqa: F401

from search.analyze import main as analyze_main
from search.engine.record import run_dir_of
from search.export import main as export_main
from search.refit import main as refit_main
from search.run import main as run_main

FAKE = ["--trainer", "search.testing:fake_fit", "--data", "synthetic", "--quiet"]

pytestmark = pytest.mark.usefixtures("search_cache", "fast_pictures")


@pytest.fixture
def study_file(tmp_path: Path) -> Path:
    tables = copy.deepcopy(TINY_STUDY)
    tables["run"]["synthetic_count"] = 16
    return write_study(tmp_path, tables)


def test_export_and_analyze_find_the_run_folder_from_the_study(study_file: Path, tmp_path: Path, capsys):
    storage = f"sqlite:///{tmp_path / 'X' / 's.db'}"
    runs = tmp_path / "X" / "runs"
    assert run_main(["--study", str(study_file), "--n-trials", "2", "--storage", storage, "--run-dir", str(runs),
                     *FAKE]) == 0
    study = optuna.load_study(study_name="tiny", storage=storage)
    assert run_dir_of(study) == runs.resolve()

    assert export_main(["--study", str(study_file), "--storage", storage, "--out", str(tmp_path / "X" / "best")]) == 0
    assert analyze_main(["--study", str(study_file), "--storage", storage, "--top", "1"]) == 0
    printed = capsys.readouterr().out
    assert "exported trial" in printed and (tmp_path / "X" / "best" / "model.safetensors").is_file()
    assert (runs / "tiny" / "report" / "index.html").is_file()  # the report goes where the trials ran
    assert not (Path.cwd() / "runs" / "tiny").exists()


def test_refit_runs_in_the_run_folder_of_its_search(study_file: Path, tmp_path: Path):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    runs = tmp_path / "far" / "runs"
    assert run_main(["--study", str(study_file), "--n-trials", "2", "--storage", storage, "--run-dir", str(runs),
                     *FAKE]) == 0
    assert refit_main(["--study", str(study_file), "--storage", storage, "--top", "1", "--seeds", "1",
                       "--image-size", "64", "--epochs", "1", *FAKE]) == 0
    assert (runs / "tiny.refit" / "trial-0").is_dir()


def test_the_old_out_spelling_of_the_run_folder_still_works_with_a_note(study_file: Path, tmp_path: Path, capsys):
    runs = tmp_path / "old"
    assert run_main(["--study", str(study_file), "--n-trials", "1", "--out", str(runs), *FAKE]) == 0
    err = capsys.readouterr().err
    assert f"note: on search.run, --out is the old spelling of --run-dir (the run folder); use --run-dir {runs}" in err
    assert (runs / "optuna.db").is_file() and (runs / "tiny" / "trial-0").is_dir()

    assert analyze_main(["--study", str(study_file), "--out", str(runs), "--top", "1"]) == 0
    assert "note: on search.analyze, --out is the old spelling" in capsys.readouterr().err


def test_out_and_a_different_run_dir_together_are_refused_before_anything_is_stored(study_file: Path,
                                                                                    tmp_path: Path, capsys):
    code = run_main(["--study", str(study_file), "--n-trials", "1", "--out", str(tmp_path / "a"),
                     "--run-dir", str(tmp_path / "b"), *FAKE])

    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: --out ") and "give --run-dir only" in err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_given_run_dir_beats_the_one_on_the_study(study_file: Path, tmp_path: Path, capsys):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    assert run_main(["--study", str(study_file), "--n-trials", "1", "--storage", storage,
                     "--run-dir", str(tmp_path / "first"), *FAKE]) == 0
    capsys.readouterr()
    code = export_main(["--study", str(study_file), "--storage", storage, "--run-dir", str(tmp_path / "empty"),
                        "--out", str(tmp_path / "best")])

    assert code == 2
    assert str(tmp_path / "empty") in capsys.readouterr().err  # it looked where it was told
