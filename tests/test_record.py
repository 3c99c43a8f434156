"""The trial record: what the objective writes reads back typed, and no other module names its keys."""

from __future__ import annotations

import re
from pathlib import Path

import optuna
from optuna.trial import TrialState

from polyp.config import TrainConfig
from polyp.train import TrainResult
from search.engine import record as writes
from search.engine.record import TrialRecord, format_number, format_setting

SEARCH = Path(__file__).resolve().parents[1] / "search"


def _result() -> TrainResult:
    history = [{"epoch": 1, "train_loss": 0.9, "val_loss": 0.8, "val_mdice": 0.4, "images_per_second": 12.0},
               {"epoch": 2, "train_loss": 0.7, "val_loss": 0.6, "val_mdice": 0.6, "images_per_second": 13.0}]
    return TrainResult(model=None, status="completed", reason="", history=history, best_epoch=2,
                       best_val={"mdice": 0.6, "miou": 0.5}, test={"mdice": 0.55, "miou": 0.45}, parameters=1234,
                       seconds=3.0)


def test_what_the_objective_writes_reads_back_as_a_record():
    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    writes.record_start(trial, retry_of=4)
    config = TrainConfig(arch="linknet", encoder="resnet18", lr=1e-3)
    writes.record_config(trial, config)
    facts = writes.record_result(trial, _result())
    writes.record_outputs(trial, {"history.csv": "abc"}, "/runs/x/trial-0")
    writes.record_overhead(trial, 0.5, 0.1)
    study.tell(trial, 0.6)

    record = TrialRecord.of(study.trials[0])
    assert record.state == TrialState.COMPLETE and record.value == 0.6 and record.retry_of == 4
    assert record.config == config.to_dict() and record.status == "completed" and record.epochs_run == 2
    assert record.val["mdice"] == 0.6 and record.test["miou"] == 0.45 and record.parameters == 1234
    assert [row["epoch"] for row in record.history] == [1, 2] and record.artifacts == {"history.csv": "abc"}
    assert record.output_dir == "/runs/x/trial-0" and record.overhead_seconds == 0.5
    assert record.images_per_second == 12.5 and record.train_seconds == 3.0
    assert record.seconds is not None and record.worker.endswith(tuple("0123456789"))
    assert facts["best_epoch"] == 2 and "history" not in facts
    assert record.describe() == "arch=linknet encoder=resnet18 encoder_depth=5 lr=1.00e-03 batch_size=8 " \
                                "loss=bce+dice optimizer=adamw"


def test_a_running_or_failed_trial_has_a_record_too():
    study = optuna.create_study()
    study.enqueue_trial({"lr": 0.01}, user_attrs=writes.csv_row_attributes(3, {"lr": 0.01}, "try this", "rows.csv"))
    trial = study.ask({"lr": optuna.distributions.FloatDistribution(1e-4, 1.0)})
    assert writes.csv_values(trial) == {"lr": 0.01}
    running = TrialRecord.of(study.trials[0])
    assert running.state == TrialState.RUNNING and running.seconds is None and running.epochs == 0
    assert running.csv_row == 3 and running.csv_notes == "try this" and running.describe() == "lr=1.00e-02"
    writes.record_failure(trial, "x" * 5000)
    study.tell(trial, state=TrialState.FAIL)
    assert len(TrialRecord.of(study.trials[0]).fail_reason) == 2000


def test_numbers_and_settings_have_one_format():
    assert format_number(0.12345) == "0.1235" and format_number(None) == "" and format_number(None, missing="–") == "–"
    assert format_number(2.5, 1) == "2.5" and format_number(True) == "" and format_number(float("nan"), missing="-") == "-"
    assert format_setting(0.0003) == "3.00e-04" and format_setting(4) == "4" and format_setting("dice") == "dice"


def test_only_the_record_module_names_user_attribute_keys():
    offenders = []
    for path in sorted(SEARCH.rglob("*.py")):
        if path.name == "record.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if re.search(r"user_attrs\s*(\.get\(|\[)|set_user_attr\(", line):
                offenders.append(f"{path.name}:{number}: {line.strip()}")
    assert offenders == []
