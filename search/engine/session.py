"""A command's study session: the study as the command line runs it, its run folder, storage and data.

A command line is read once into a `StudyRequest` (`search.cli.study_request`); `open_session` opens what it
names. Commands that run trials create the study and keep their run folder on it; commands that read a study
(analyze, export, the dashboard, a refit's source) find the run folder there when the request names none.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import optuna

from polyp.data import PolypData, Split, prepare_data
from search.engine.artifacts import open_artifact_store
from search.engine.outputs import study_dir
from search.engine.record import (
    RUN_DATA_KEYS,
    kept_run_data,
    latency_limit,
    ranking,
    record_latency_limit,
    record_run_data,
    record_run_dir,
    refit_settings,
    run_data,
    run_dir_of,
)
from search.engine.storage import default_storage_url, open_storage, safe_url
from search.study.definition import (
    MULTI_OBJECTIVE_PRUNING,
    REFIT_SUFFIX,
    RefitSettings,
    StudySpec,
    as_list,
    load_study,
    refit_study,
)
from search.study.errors import CommandLineError, StudyError
from search.study.forced import CommandSettings, check_objective, with_command_line
from search.study.imagenet import check_imagenet_available
from search.study.samplers import build_pruner, seeded_sampler

warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeat, TPE group: stable in use

DEFAULT_RUN_DIR = "runs"


@dataclass(frozen=True)
class StudyRequest:
    """Which study a command opens and how: what its command line said, read once.

    Args:
        study: a study name (studies/NAME.toml) or a .toml path.
        storage: SQLAlchemy URL; None = SQLite in the run folder.
        run_dir: the run folder; None = the study's own (where its trials ran), else `runs`.
        artifacts: the artifact store (a folder or s3://...); None = `<run folder>/artifacts`.
        heartbeat: seconds between a running trial's heartbeats.
        settings: the [run] and training settings the command line forces.
    """

    study: str
    storage: str | None = None
    run_dir: str | None = None
    artifacts: str | None = None
    heartbeat: int = 15
    settings: CommandSettings = field(default_factory=CommandSettings)

    def spec(self) -> StudySpec:
        """The study definition as this command runs it (its file, with the command line's settings)."""
        return with_command_line(load_study(self.study), self.settings)


@dataclass
class Session:
    """An opened study: its definition, run folder, storage URL and the Optuna study."""

    spec: StudySpec
    run_dir: Path
    storage_url: str
    storage: optuna.storages.RDBStorage
    study: optuna.Study
    artifacts: object  # the Optuna artifact store of the trials' files (search.engine.artifacts)

    @property
    def folder(self) -> Path:
        """`<run folder>/<study>`."""
        return study_dir(self.run_dir, self.spec.name)

    def sampler_for(self, trial_number: int) -> optuna.samplers.BaseSampler:
        """The sampler for the trial about to get `trial_number` (for `run_until`)."""
        return seeded_sampler(self.spec, trial_number)


def writable_run_dir(path: str | Path) -> Path:
    """Creates the run folder and checks that it can be written; a CommandLineError naming it otherwise."""
    run_dir = Path(path)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-test-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as error:
        raise CommandLineError(f"run folder {run_dir} is not writable: {error.strerror or error}") from None
    return run_dir


def open_session(request: StudyRequest, create: bool = True, spec: StudySpec | None = None) -> Session:
    """Opens the storage and creates (`create`, for commands that run trials) or loads the Optuna study.

    Args:
        request: what the command line named.
        create: create the study if it is new, check its pruner and ImageNet weights, and keep the run folder
            on it; otherwise load an existing study (StudyError naming the studies there if there is none).
        spec: the study definition, when the command built it already (`request.spec()`, maybe narrowed).
    """
    spec = spec or request.spec()
    if create:  # before anything is written: build_pruner refuses a pair the sampler cannot search under
        check_objective(spec, request.settings)
        pruner = build_pruner(spec.run.pruner, spec)  # a two-objective study's: Optuna's NopPruner
        if spec.run.multi_objective:
            print(f"note: study {spec.name} searches {' and '.join(as_list(spec.run.objectives))} together: "
                  f"{MULTI_OBJECTIVE_PRUNING}{f' (pruner {spec.run.pruner!r} is not used)' if spec.run.pruner != 'none' else ''}",
                  file=sys.stderr, flush=True)
        check_imagenet_available(spec)  # commands that train: stop before any trial, not in every trial
    given = Path(request.run_dir) if request.run_dir else None
    run_dir = given or Path(DEFAULT_RUN_DIR)
    run_dir = writable_run_dir(run_dir)
    url = request.storage or default_storage_url(run_dir)
    if create:
        artifacts = open_artifact_store(run_dir, request.artifacts)  # checked before the study is touched
    storage = open_storage(url, request.heartbeat)
    if create:
        check_same_objectives(storage, spec)
        study = optuna.create_study(study_name=spec.name, storage=storage, directions=spec.run.directions,
                                    load_if_exists=True, pruner=pruner)  # the sampler: Session.sampler_for, one per trial
        if spec.run.multi_objective and not study.metric_names:
            with warnings.catch_warnings():  # experimental since Optuna 3.2, stable in use
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names(list(as_list(spec.run.objectives)))  # optuna-dashboard's axis names
        check_same_ranking(study, spec)
        check_same_latency_limit(study, spec)
        record_run_data(study, spec.run)
        record_latency_limit(study, spec.run.max_latency_ms)
        if given is not None or run_dir_of(study) is None:  # a worker elsewhere with the default keeps the study's
            record_run_dir(study, run_dir)
        return Session(spec, run_dir, url, storage, study, artifacts)
    study = load_existing(storage, url, spec.name)
    stored = run_dir_of(study)
    if given is None and stored is not None and stored.is_dir():
        run_dir = writable_run_dir(stored)  # where its trials ran: their folders and (by default) their artifacts
    spec = with_stored_data(with_stored_refit(spec, study, request), study, request)
    check_objective(spec, request.settings)
    return Session(spec, run_dir, url, storage, study, open_artifact_store(run_dir, request.artifacts))


def check_stored_choices(session: Session, name: str) -> None:
    """Refuses to search `name` over other choices than the study's earlier trials did (Optuna cannot mix them:
    every new trial would fail), naming both lists. Offline a search leaves out the encoders without ImageNet
    weights, so a study begun on one machine may not go on as it is on another."""
    wanted = session.spec.space.get(name)
    if not isinstance(wanted, list):
        return
    for trial in session.study.get_trials(deepcopy=False):
        stored = trial.distributions.get(name)
        if isinstance(stored, optuna.distributions.CategoricalDistribution) and list(stored.choices) != wanted:
            raise StudyError(f"study {session.spec.name}: its trials searched {name} over {list(stored.choices)}, "
                             f"this command searches {wanted} (on a machine without internet only the encoders with "
                             f"local ImageNet weights are searched); run it where the same encoders have weights, "
                             f"or as a new study (another --storage or study file)")


def load_existing(storage: optuna.storages.RDBStorage, url: str, name: str) -> optuna.Study:
    """The stored study `name`; a StudyError naming the studies the storage holds if it has none of that name."""
    names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
    if name not in names:
        raise StudyError(f"no study {name!r} in {safe_url(url)}; studies there: {', '.join(names) or 'none'}")
    return optuna.load_study(study_name=name, storage=storage)


def with_stored_data(spec: StudySpec, study: optuna.Study, request: StudyRequest) -> StudySpec:
    """The study with the data and test list its search trained on, where the command line names none (analyze
    and export then score the same images the trials saw)."""
    stored = run_data(study)
    if stored is None:
        return spec
    given = request.settings.run
    kept = {key: tuple(value) if isinstance(value, list) else value for key, value in stored.items()
            if key in RUN_DATA_KEYS}
    if "data" in given or "test_list" in given:  # other training sets: their test lists and groups with them
        kept = {key: value for key, value in kept.items() if key not in ("data", "test_list", "groups")}
    kept = {key: value for key, value in kept.items() if key not in given}
    return dataclasses.replace(spec, run=dataclasses.replace(spec.run, **kept))


def check_same_objectives(storage: optuna.storages.RDBStorage, spec: StudySpec) -> None:
    """Refuses to go on with a stored study that optimises other objectives than `[run].objectives` (Optuna keeps
    a study's directions as it was created), naming both."""
    try:
        stored = storage.get_study_directions(storage.get_study_id_from_name(spec.name))
    except KeyError:  # a new study
        return
    if len(stored) != len(spec.run.directions):
        before = ["mdice", "latency_ms"] if len(stored) > 1 else ["mdice"]
        raise StudyError(f"study {spec.name}: it was created with objectives [{', '.join(before)}], this command asks "
                         f"for [{', '.join(as_list(spec.run.objectives))}]; Optuna cannot change a study's objectives: "
                         f"give --objectives {' '.join(before)} (or set [run].objectives so), or run a new study "
                         f"(another --storage or study file)")


def check_same_latency_limit(study: optuna.Study, spec: StudySpec) -> None:
    """Refuses to go on with a study whose finished trials ran under another latency limit: their constraints
    and their pruning were measured from it (and Optuna keeps a trial's constraint as first set)."""
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    before, now = latency_limit(study), spec.run.max_latency_ms
    if before != now and study.get_trials(deepcopy=False, states=finished):
        raise StudyError(f"study {spec.name}: its trials ran under max_latency_ms {before:g}, now {now:g} (0: no limit); "
                         f"give the same limit, or run a new study (another --storage or study file); "
                         f"search.export --max-latency-ms picks among the finished trials by any limit")


def check_same_ranking(study: optuna.Study, spec: StudySpec) -> None:
    """Refuses to go on with a study whose complete trials were ranked by other validation sets, another limit or
    another objective: their values would not compare with the new ones (TPE, the pruner and the best trial
    treat them as one number)."""
    if not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        return
    before, now = ranking(run_data(study)), ranking(kept_run_data(spec.run))
    if before != now:
        differs = [f"{key} {before[key]!r} before, {now[key]!r} now" for key in before if before[key] != now[key]]
        raise StudyError(f"study {spec.name}: its complete trials were ranked by other validation settings ("
                         f"{'; '.join(differs)}); give the same --val-data/--val-limit/--objective, or run a new "
                         f"study (another --storage or study file)")


def with_stored_refit(spec: StudySpec, study: optuna.Study, request: StudyRequest) -> StudySpec:
    """A refit study as `search.refit` made it (its image size, epochs, seeds and folds, kept on the study),
    whatever the source study's `[refit]` table says now; any other study unchanged."""
    stored = refit_settings(study)
    if stored is None or not spec.name.endswith(REFIT_SUFFIX):
        return spec
    settings = RefitSettings(**{key: stored[key] for key in RefitSettings.__dataclass_fields__ if key in stored})
    source = load_study(request.study[: -len(REFIT_SUFFIX)])
    return with_command_line(refit_study(source, settings), request.settings)


def load_data(session: Session) -> PolypData:
    """Decodes the study's data once; the split is read from (or written to) `<study>/split.json`."""
    run = session.spec.run
    manifest = session.folder / "split.json"
    split = Split.load(manifest) if manifest.exists() else None
    data = prepare_data(run.sources(), session.spec.base.image_size, run.seed, run.val_fraction, run.test_fraction,
                        split=split, synthetic_count=run.synthetic_count, external=run.external(),
                        val_limit=run.val_limit, objective=run.objective)
    if split is None:
        data.split.save(manifest)
    return data
