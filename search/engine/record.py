"""A trial's record: the user attributes the objective and the replay write, and every command reads.

Optuna keeps a trial's number, state, value, params and reported values. Everything else this project
knows about a trial lives in its user attributes, under the keys below; this module is the only one that
names them. Writers are the functions `record_*` (the objective, the replay); readers take a
`TrialRecord` (`TrialRecord.of(trial)`), the one typed view of a finished or running trial.

Keys (user attribute: what it holds):
    worker: "host:pid" of the worker that ran the trial.
    retry_of: the number of the trial this one repeats after that trial's worker died.
    config: the TrainConfig trained, as `TrainConfig.to_dict()`.
    status: how training ended ("completed", "early_stopped", "stopped", "diverged"; "too_slow": not trained, its
        model is over the study's max_latency_ms; "over_budget": stopped, or not trained, by search.auto's budget).
    reason: why training ended early ("" when it did not).
    epochs_run: epochs trained.
    best_epoch: the epoch whose weights were kept (0: none finished).
    val, test: metrics at the best epoch (mdice, miou, dice_pooled, iou_pooled, precision, recall).
    parameters: the model's parameter count.
    images_per_second: training speed.
    latency: the model's inference time per frame before it trains (polyp.latency.Latency.to_dict(): torch_ms,
        onnx_ms, image_size, device, threads).
    train_seconds: training time in seconds.
    history: one dict per epoch (epoch, train_loss, val_loss, val_mdice, ...).
    artifacts: {file name: Optuna artifact id} of the trial's files.
    output_dir: the trial's folder.
    overhead_seconds, overhead_fraction: time after training (files, artifacts, note), in seconds and as a
        share of the trial.
    fail_reason: why the trial failed.
    csv_row, csv_values, csv_notes, csv_file: the spreadsheet row a replayed trial runs (its number, its
        TrainConfig values, its notes cell, the file's name).
    refit_source, refit_source_value, refit_seed, refit_fold, refit_values: a refit run (search.refit): the
        search trial whose configuration it trains again, that trial's value, its seed and fold (-1: the study's
        own validation split), and the TrainConfig values it trains.
    stage_source: the trial of search.auto's previous stage whose configuration a stage-2 trial trains again.

Study attributes (kept on the study, also only here): run_data (the data sets, test lists, validation sets and
objective its trials train and rank by),
run_dir (the run folder its trials ran in), refit_settings (a refit study's settings and source study), and
search.auto's run state on its stage-1 study: auto_inputs, auto_stages, auto_spent, auto_done, auto_correction,
auto_budget, auto_delivered (`auto_attribute`; search.planning.state says what each holds).

Example:
    >>> import optuna
    >>> study = optuna.create_study()
    >>> trial = study.ask()
    >>> record_failure(trial, "diverged")
    >>> TrialRecord.of(study.trials[0]).fail_reason
    'diverged'
"""

from __future__ import annotations

import numbers
import socket
from dataclasses import dataclass, field
from os import getpid
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from polyp.config import TrainConfig
from polyp.data.sources import split_name
from polyp.train import TrainResult
from search.study.definition import as_list

KEY_SETTINGS = ("arch", "encoder", "encoder_depth", "lr", "batch_size", "loss", "optimizer")  # a trial in one line
AnyTrial = optuna.trial.Trial | FrozenTrial


def trial_value(trial: FrozenTrial) -> float | None:
    """A finished trial's validation score: its value, or its first in a study that also minimises latency
    (`[run].objectives`); None while it has none."""
    values = trial.values
    return values[0] if values else None


@dataclass(frozen=True)
class TrialRecord:
    """What the project knows about one trial: Optuna's fields and the record's user attributes."""

    number: int
    state: TrialState
    value: float | None
    params: dict[str, Any]
    seconds: float | None  # wall time of a finished trial (None while it runs)
    intermediate: dict[int, float]  # the objective reported per epoch (validation mDice without external sets)
    config: dict[str, Any] = field(default_factory=dict)
    status: str | None = None
    reason: str = ""
    epochs_run: int | None = None
    best_epoch: int | None = None
    val: dict[str, float] = field(default_factory=dict)
    test: dict[str, float] = field(default_factory=dict)
    parameters: int | None = None
    images_per_second: float | None = None
    latency: dict[str, Any] = field(default_factory=dict)
    train_seconds: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    artifacts: dict[str, str] = field(default_factory=dict)
    output_dir: str = ""
    overhead_seconds: float | None = None
    overhead_fraction: float | None = None
    worker: str = ""
    retry_of: int | None = None
    fail_reason: str = ""
    csv_row: int | None = None
    csv_values: dict[str, Any] | None = None
    csv_notes: str = ""
    csv_file: str = ""
    refit_source: int | None = None
    refit_source_value: float | None = None
    refit_seed: int | None = None
    refit_fold: int | None = None
    refit_values: dict[str, Any] | None = None

    @classmethod
    def of(cls, trial: FrozenTrial) -> TrialRecord:
        """The record of a stored trial (attributes it does not have take their defaults)."""
        attrs = trial.user_attrs
        known = {name: attrs[name] for name in _ATTRIBUTES if attrs.get(name) is not None}
        reported = dict(trial.intermediate_values) or {int(epoch): value for epoch, value in
                                                       (attrs.get(REPORTED) or {}).items()}
        return cls(trial.number, trial.state, trial_value(trial), dict(trial.params), trial_seconds(trial),
                   reported, **known)

    @property
    def epochs(self) -> int:
        """Epochs trained: the stored count, else the epochs reported so far."""
        return self.epochs_run if self.epochs_run is not None else len(self.intermediate)

    @property
    def settings(self) -> dict[str, Any]:
        """The trained config, or the sampled params while the trial has none stored."""
        return self.config or self.params

    def latency_ms(self, runtime: str = "torch") -> float | None:
        """Milliseconds per frame with `runtime` ("torch" or "onnx"), None where it was not timed."""
        return self.latency.get(f"{runtime}_ms")

    @property
    def fastest_ms(self) -> float | None:
        """Milliseconds per frame of the faster runtime (what `polyp.predict --runtime auto` keeps), None when
        the trial was not timed."""
        times = [ms for ms in (self.latency_ms("torch"), self.latency_ms("onnx")) if ms is not None]
        return min(times) if times else None

    def describe(self, keys: tuple[str, ...] = KEY_SETTINGS) -> str:
        """A short "key=value" list of the trial's settings, e.g. "arch=linknet lr=1.00e-03"."""
        return " ".join(f"{key}={format_setting(self.settings[key])}" for key in keys if key in self.settings)


_ATTRIBUTES = tuple(name for name in TrialRecord.__dataclass_fields__
                    if name not in ("number", "state", "value", "params", "seconds", "intermediate"))


def trial_seconds(trial: FrozenTrial) -> float | None:
    """Wall time of a finished trial in seconds, to the hundredth (None while it runs)."""
    if trial.datetime_start is None or trial.datetime_complete is None:
        return None
    return round((trial.datetime_complete - trial.datetime_start).total_seconds(), 2)


def format_setting(value: Any) -> str:
    """A setting as the commands print it: floats in scientific notation (1.00e-03), the rest as they are."""
    return f"{value:.2e}" if isinstance(value, float) else str(value)


def format_number(value: Any, digits: int = 4, missing: str = "") -> str:
    """A metric with `digits` decimals, or `missing` when there is none (None, NaN, not a number)."""
    number = isinstance(value, numbers.Real) and not isinstance(value, bool) and value == value  # numpy's too
    return f"{value:.{digits}f}" if number else missing


def record_start(trial: optuna.trial.Trial, retry_of: int | None) -> None:
    """Which worker runs the trial, and which trial it repeats (a retry after a dead worker)."""
    trial.set_user_attr("worker", f"{socket.gethostname()}:{getpid()}")
    if retry_of is not None:
        trial.set_user_attr("retry_of", retry_of)


def record_config(trial: optuna.trial.Trial, config: TrainConfig) -> None:
    """The config the trial trains."""
    trial.set_user_attr("config", config.to_dict())


def record_latency(trial: optuna.trial.Trial, latency: dict[str, Any]) -> None:
    """The model's inference time per frame (`polyp.latency.Latency.to_dict()`)."""
    trial.set_user_attr("latency", latency)


def record_latency_constraint(trial: optuna.trial.Trial, over_ms: float) -> None:
    """How far the model is over the study's latency limit (<= 0: within it), as Optuna's constraint
    "latency_ms", which TPE learns from. A retried trial keeps the constraint of the trial it repeats (Optuna
    copies it): the same configuration, timed before."""
    if "latency_ms" not in trial.constraints:
        trial.set_constraint("latency_ms", over_ms)


REPORTED = "reported"  # a two-objective trial's value per epoch (Optuna's Trial.report takes one objective only)


def record_reported(trial: optuna.trial.Trial, reported: dict[int, float]) -> None:
    """The objective of each epoch so far, of a trial Optuna cannot report to (a two-objective study)."""
    trial.set_user_attr(REPORTED, {str(epoch): value for epoch, value in reported.items()})


def record_too_slow(trial: optuna.trial.Trial, reason: str) -> None:
    """A trial stopped before training because its model is slower than the study's latency limit."""
    trial.set_user_attr("status", "too_slow")
    trial.set_user_attr("reason", reason)


def record_over_budget(trial: optuna.trial.Trial, reason: str) -> None:
    """A trial that search.auto's budget stopped early or did not let start (its stage's share ran out)."""
    trial.set_user_attr("status", "over_budget")
    trial.set_user_attr("reason", reason)


def record_result(trial: optuna.trial.Trial, result: TrainResult) -> dict[str, Any]:
    """How training went; returns the facts written (without the history), for notes and hooks."""
    facts = {
        "status": result.status, "reason": result.reason, "epochs_run": len(result.history),
        "best_epoch": result.best_epoch, "val": result.best_val, "test": result.test,
        "parameters": result.parameters, "images_per_second": result.images_per_second,
        "train_seconds": result.seconds,
        **({"averaged": result.averaged} if result.averaged else {}),  # swa_epochs: the averaged weights were kept
    }
    for key, value in facts.items():
        trial.set_user_attr(key, value)
    trial.set_user_attr("history", result.history)
    return facts


def record_outputs(trial: optuna.trial.Trial, artifacts: dict[str, str], output_dir: str) -> None:
    """The trial's artifact ids and folder."""
    trial.set_user_attr("artifacts", artifacts)
    trial.set_user_attr("output_dir", output_dir)


def record_overhead(trial: optuna.trial.Trial, seconds: float, fraction: float) -> None:
    """Time spent after training (files, artifacts, note)."""
    trial.set_user_attr("overhead_seconds", seconds)
    trial.set_user_attr("overhead_fraction", fraction)


def record_failure(trial: optuna.trial.Trial, reason: str) -> None:
    """Why the trial failed (kept short enough for any storage). A trial that is already finished (another worker
    failed it because its heartbeat was late) keeps no reason: the failure that called this must not be replaced
    by Optuna's refusal to update it (a Ctrl-C or SIGTERM would be lost)."""
    try:
        trial.set_user_attr("fail_reason", reason[:2000])
    except optuna.exceptions.UpdateFinishedTrialError:
        pass


def csv_row_attributes(number: int, values: dict[str, Any], notes: str, file_name: str) -> dict[str, Any]:
    """The user attributes a replayed spreadsheet row is enqueued with."""
    return {"csv_row": number, "csv_values": values, "csv_notes": notes, "csv_file": file_name}


def refit_attributes(source: FrozenTrial, seed: int, fold: int, values: dict[str, Any]) -> dict[str, Any]:
    """The user attributes a refit run is enqueued with (search.refit)."""
    return {"refit_source": source.number, "refit_source_value": trial_value(source), "refit_seed": seed,
            "refit_fold": fold, "refit_values": values}


STAGE_SOURCE = "stage_source"


def stage_source_attributes(source: FrozenTrial) -> dict[str, Any]:
    """The user attributes a search.auto stage-2 trial is enqueued with: the stage-1 trial it trains again."""
    return {STAGE_SOURCE: source.number}


def stage_source(trial: AnyTrial) -> int | None:
    """The stage-1 trial a search.auto stage-2 trial trains again (None: not such a trial)."""
    return trial.user_attrs.get(STAGE_SOURCE)


RUN_DATA = "run_data"  # the study attribute: the data folder and test list its trials trained on


def set_scores(val: dict[str, Any]) -> list[str]:
    """The per-set score keys of a trial's validation metrics ("cvc_mdice", ...): each training set's part of the
    in-domain split when there are several, and each external validation set."""
    return sorted(key for key in val if key.endswith(("_mdice", "_miou")) and key not in ("mdice", "miou"))


def _resolved(value: str) -> str:
    """A [NAME=]PATH data setting with its path made absolute ("synthetic" stays)."""
    name, path = split_name(value)
    if path == "synthetic":
        return value
    full = str(Path(path).expanduser().resolve())
    return f"{name}={full}" if name else full


def _kept(value: str | tuple[str, ...]) -> str | list[str]:
    if isinstance(value, str):
        return _resolved(value) if value else ""
    values = [_resolved(item) for item in value]
    return values[0] if len(values) == 1 and split_name(values[0])[0] is None else values


RUN_DATA_KEYS = ("data", "test_list", "groups", "val_data", "val_limit", "objective")
RANKING_KEYS = ("val_data", "val_limit", "objective")  # the settings a trial's value depends on


def ranking(stored: dict[str, Any] | None) -> dict[str, Any]:
    """What a study's trial values were measured by: its validation sets, their limit and the objective (the
    defaults for a study that kept none)."""
    stored = stored or {}
    return {"val_data": list(stored.get("val_data", [])), "val_limit": stored.get("val_limit", 0),
            "objective": stored.get("objective", "mean")}


def record_run_data(study: optuna.Study, run: Any) -> None:
    """The data a search trains on (`run`: its RunSettings), kept on the study so that analyze, export and refit
    use the same images; the validation sets, groups and objective only where a study has them."""
    keep = kept_run_data(run)
    if not (keep["groups"] or keep["val_data"] or keep["val_limit"] or keep["objective"] != "mean"):
        keep = {"data": keep["data"], "test_list": keep["test_list"]}  # as studies before the validation sets
    if study.user_attrs.get(RUN_DATA) != keep:
        study.set_user_attr(RUN_DATA, keep)


def kept_run_data(run: Any) -> dict[str, Any]:
    """The data settings of `run` as this module keeps them, every path absolute (for comparing with a study's)."""
    return {"data": _kept(run.data), "test_list": _kept(run.test_list),
            "groups": [_resolved(v) for v in as_list(run.groups)],
            "val_data": [_resolved(v) for v in as_list(run.val_data)],
            "val_limit": run.val_limit, "objective": run.objective}


def run_data(study: optuna.Study) -> dict[str, Any] | None:
    """The data settings (RUN_DATA_KEYS) that `record_run_data` kept on the study (None for a study from before
    it; a study from before the validation sets has only "data" and "test_list")."""
    stored = study.user_attrs.get(RUN_DATA)
    return stored if isinstance(stored, dict) and "data" in stored else None


LATENCY_LIMIT = "max_latency_ms"  # the study attribute: the latency limit its trials ran under (absent: none)


def record_latency_limit(study: optuna.Study, limit: float) -> None:
    """The latency limit a command runs the study's trials under (its trials' constraints are measured from it)."""
    if study.user_attrs.get(LATENCY_LIMIT, 0.0) != limit:
        study.set_user_attr(LATENCY_LIMIT, limit)


def latency_limit(study: optuna.Study) -> float:
    """The latency limit the study's trials ran under (0: none)."""
    return float(study.user_attrs.get(LATENCY_LIMIT, 0.0))


RUN_DIR = "run_dir"  # the study attribute: the run folder its trials ran in (as the last command that ran them saw it)


def record_run_dir(study: optuna.Study, run_dir: Path) -> None:
    """The run folder a command runs the study's trials in, kept on the study so that analyze, export, refit and
    the dashboard find the trials' folders without --run-dir."""
    keep = str(Path(run_dir).expanduser().resolve())
    if study.user_attrs.get(RUN_DIR) != keep:
        study.set_user_attr(RUN_DIR, keep)


def run_dir_of(study: optuna.Study) -> Path | None:
    """The run folder `record_run_dir` kept on the study (None for a study from before it)."""
    stored = study.user_attrs.get(RUN_DIR)
    return Path(stored) if isinstance(stored, str) and stored else None


REFIT_SETTINGS = "refit_settings"  # the study attribute of a refit study: its RefitSettings and source study


def record_refit_settings(study: optuna.Study, settings: dict[str, Any]) -> None:
    """What a refit study trains (search.refit), kept on the study so every later command reads it."""
    study.set_user_attr(REFIT_SETTINGS, settings)


def refit_settings(study: optuna.Study) -> dict[str, Any] | None:
    """The settings `record_refit_settings` kept on a refit study (None for any other study)."""
    stored = study.user_attrs.get(REFIT_SETTINGS)
    return stored if isinstance(stored, dict) else None


def refit_values(trial: AnyTrial) -> dict[str, Any] | None:
    """The config values a (running) refit trial must train, if it is one."""
    return trial.user_attrs.get("refit_values")


def refit_fold(trial: AnyTrial) -> int:
    """The cross-validation fold a (running) refit trial validates on; -1: the study's validation split."""
    fold = trial.user_attrs.get("refit_fold")
    return -1 if fold is None else int(fold)


def trained_config(trial: AnyTrial) -> dict[str, Any]:
    """The config a (running) trial trains, as stored by `record_config` ({} before)."""
    return trial.user_attrs.get("config") or {}


def artifact_ids(trial: AnyTrial) -> dict[str, str]:
    """{file name: artifact id} of a (running) trial's uploaded files ({} before)."""
    return trial.user_attrs.get("artifacts") or {}


def csv_values(trial: AnyTrial) -> dict[str, Any] | None:
    """The spreadsheet row's values a (running) trial must train, if it replays one."""
    return trial.user_attrs.get("csv_values")


AUTO_PREFIX = "auto_"  # search.auto's run state on its stage-1 study (search.planning.state)


def auto_attribute(study: optuna.Study | Any, name: str, default: Any = None) -> Any:
    """search.auto's state value `name` on its stage-1 study (or a study summary); `default` when unset."""
    return study.user_attrs.get(f"{AUTO_PREFIX}{name}", default)


def record_auto_attribute(study: optuna.Study, name: str, value: Any) -> None:
    """Keeps search.auto's state value `name` on its stage-1 study."""
    study.set_user_attr(f"{AUTO_PREFIX}{name}", value)
