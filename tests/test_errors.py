"""Commands print the project's errors (PolypError) as one line and exit 2; any other exception is a bug and
propagates with its traceback instead of passing for bad input."""

from __future__ import annotations

import pytest

import polyp.bench
import polyp.data.synthetic
import polyp.predict
import polyp.serve.__main__
import polyp.train.__main__
from polyp.checkpoint import CheckpointError
from polyp.config import ConfigError
from polyp.data import DataError
from polyp.errors import PolypError
from polyp.serve import ImageRejected


@pytest.mark.parametrize("error_class", [ConfigError, DataError, CheckpointError, ImageRejected])
def test_every_user_error_class_is_a_polyp_error(error_class):
    assert issubclass(error_class, PolypError) and issubclass(error_class, ValueError)


def _raise(error: Exception):
    def fail(*_args, **_kwargs):
        raise error

    return fail


def train_argv(synthetic_dir, tmp_path) -> list[str]:
    return ["--data", str(synthetic_dir), "--out", str(tmp_path / "run"), "--arch", "linknet", "--encoder", "resnet18",
            "--encoder-depth", "3", "--image-size", "32", "--batch-size", "4", "--epochs", "1", "--augment", "none",
            "--precision", "fp32", "--threads", "1", "--device", "cpu"]


INTERNAL_FAILURES = {  # command, the function of its module that fails, the failure
    "train: the trainer": (polyp.train.__main__, "fit", RuntimeError("injected trainer bug")),
    "train: the data pipeline": (polyp.train.__main__, "prepare_data", ValueError("injected data bug")),
    "train: the history writer": (polyp.train.__main__, "write_history", ValueError("injected history bug")),
    "predict: loading": (polyp.predict, "load_checkpoint", ValueError("injected loading bug")),
    "serve: loading": (polyp.predict, "load_checkpoint", RuntimeError("injected loading bug")),
    "bench: a measurement": (polyp.bench, "run", ValueError("injected measurement bug")),
    "synthetic: drawing": (polyp.data.synthetic, "make_sample", ValueError("injected drawing bug")),
}


def command_argv(case: str, synthetic_dir, tmp_path) -> tuple:
    """The main function and the arguments of the command `case` runs, with inputs that are all fine."""
    image = str(sorted((synthetic_dir / "images").iterdir())[0])
    command = case.split(":")[0]
    return {
        "train": (polyp.train.__main__.main, train_argv(synthetic_dir, tmp_path)),
        "predict": (polyp.predict.main, ["--model", str(tmp_path), "--input", image, "--out", str(tmp_path / "out")]),
        "serve": (polyp.serve.__main__.main, ["--model", str(tmp_path)]),
        "bench": (polyp.bench.main, ["--arch", "linknet", "--encoder", "resnet18", "--image-size", "32"]),
        "synthetic": (polyp.data.synthetic.main, ["--out", str(tmp_path / "synthetic"), "--count", "2"]),
    }[command]


@pytest.mark.parametrize("case", INTERNAL_FAILURES, ids=list(INTERNAL_FAILURES))
def test_an_internal_failure_propagates_instead_of_exiting_2(case, synthetic_dir, tmp_path, monkeypatch, capsys):
    module, name, failure = INTERNAL_FAILURES[case]
    monkeypatch.setattr(module, name, _raise(failure))
    main, argv = command_argv(case, synthetic_dir, tmp_path)

    with pytest.raises(type(failure), match="injected"):
        main(argv)
    assert "error:" not in capsys.readouterr().err


def test_a_config_error_found_after_loading_the_data_exits_2_with_one_line(synthetic_dir, tmp_path, capsys):
    argv = [*train_argv(synthetic_dir, tmp_path), "--val-fraction", "0", "--schedule", "plateau"]

    assert polyp.train.__main__.main(argv) == 2
    err = capsys.readouterr().err
    assert err == "error: schedule 'plateau' needs validation images; the split has none (val fraction 0)\n"
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", ["train", "synthetic"])
def test_an_output_folder_that_cannot_be_created_exits_2_naming_it(command, synthetic_dir, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way")
    main, argv = command_argv(command, synthetic_dir, blocker)

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --out {blocker}/") and "cannot create the folder" in err
    assert "Traceback" not in err
