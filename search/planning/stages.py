"""search.auto's three stages as studies in one storage: NAME.s1 (the space searched small and short with
successive halving), NAME.s2 (the best third of NAME.s1 again at a larger size) and NAME.refit (the best of
NAME.s2 refit at the final size, as `search.refit` does). Each runs its trials under its stage's budget
(`search.planning.clock`), so the same command resumes a stage where it stopped.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from polyp.data import PolypData
from search.engine.enqueue import PlannedTrial, enqueue_missing
from search.engine.notes import write_note
from search.engine.objective import Objective
from search.engine.record import (
    TrialRecord,
    refit_settings,
    stage_source,
    stage_source_attributes,
    trial_value,
)
from search.engine.refit_runs import (
    FoldData,
    enqueue_runs,
    print_run,
    record_refit,
    refit_split,
    run_key,
    run_plan,
)
from search.engine.session import Session, StudyRequest, load_data, open_session
from search.engine.storage import safe_url
from search.engine.trial_loop import print_trial, run_until, top_trials
from search.planning.clock import StageBudget, StageClock
from search.planning.plan import S2_SHARE_OF_S1, Costs, Stage
from search.planning.stage_workers import StageWorkers
from search.planning.state import RunState
from search.study.definition import RefitSettings, StudySpec, refit_study
from search.study.errors import StudyError
from search.study.forced import with_command_line
from search.study.samplers import build_pruner

STAGE_PRUNERS = {"s1": "sha", "s2": "none"}


@dataclass
class AutoRun:
    """One search.auto run: the space with the command line's data, where it is kept, and how it trains."""

    spec: StudySpec  # the space study as the command line runs it (its data settings)
    request: StudyRequest  # storage, run folder (the --out folder), forced settings (device, threads)
    budget: float  # seconds
    trainer: Callable
    verbose: bool
    log: Path
    workers: StageWorkers | None = None  # several processes run each stage's trials (--workers N); None: this one

    @property
    def name(self) -> str:
        return self.spec.name

    def stage_spec(self, stage: str, image_size: int, epochs: int) -> StudySpec:
        """The study a search stage runs: NAME.s1 or NAME.s2, its pruner, forced size and epochs, one objective,
        each trial timed with PyTorch only (the delivered model is timed with both runtimes)."""
        run = dataclasses.replace(self.spec.run, pruner=STAGE_PRUNERS[stage], warmup_epochs=1, objectives=("mdice",),
                                  max_latency_ms=0.0, latency="torch")
        staged = dataclasses.replace(self.spec, name=f"{self.name}.{stage}", run=run)
        return with_command_line(staged, self.request.settings.with_training(image_size=image_size, epochs=epochs))

    def open_stage(self, stage: str, image_size: int, epochs: int) -> Session:
        return open_session(self.request, spec=self.stage_spec(stage, image_size, epochs))


def stage_budget(clock: StageClock, costs: Costs, image_size: int, keeps_stopped: bool = False) -> StageBudget:
    """The budget a stage gives each trial: its first epoch predicted from the step times."""
    fastest = min(costs.epoch_seconds(model, image_size) for model in costs.times.per_image)
    return StageBudget(clock, lambda cfg: costs.epoch_seconds((cfg.arch, cfg.encoder), cfg.image_size), keeps_stopped,
                       fastest)


def model_of(trial: FrozenTrial) -> tuple[str, str]:
    config = TrialRecord.of(trial).config or trial.params
    return config.get("arch", ""), config.get("encoder", "")


def _objective(run: AutoRun, session: Session, data: PolypData, budget: StageBudget, **extra) -> Objective:
    return Objective(session.spec, data, session.run_dir, trainer=run.trainer, verbose=run.verbose,
                     after_trial=[write_note], artifacts=session.artifacts, budget=budget, **extra)


def stage1_loop(run: AutoRun, session: Session, data: PolypData, stage: Stage, costs: Costs, clock: StageClock) -> None:
    """Samples stage 1's trials until the study holds `stage.trials` finished or running ones or the share is spent
    (any number of workers together)."""
    objective = _objective(run, session, data, stage_budget(clock, costs, stage.image_size))
    run_until(session.study, objective, stage.trials, session.storage, timeout=max(0.0, clock.left()),
              callbacks=[print_trial, clock.progress], sampler_for=session.sampler_for, stop_when=clock.over)


def run_stage1(run: AutoRun, session: Session, data: PolypData, state: RunState, stage: Stage, costs: Costs) -> None:
    """Stage 1 under its clock: in this process, or in `run.workers` processes that share the study."""
    with StageClock(state, "s1", stage.seconds, run.budget, run.log) as clock:
        if run.workers is not None:
            if not clock.over():
                run.workers.run("s1", clock.deadline)
        else:
            stage1_loop(run, session, data, stage, costs, clock)


def waiting(session: Session, wanted: Callable[[FrozenTrial], bool]) -> int:
    """How many of a stage's enqueued trials still wait to be trained (the workers worth starting)."""
    return sum(1 for t in session.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)) if wanted(t))


def stage1_score(trial: FrozenTrial) -> float:
    """A stage-1 trial's best validation value at any epoch it reached (a pruned trial's too)."""
    reported = [value for value in trial.intermediate_values.values() if value == value]
    return max(reported) if reported else (trial_value(trial) or 0.0)


def stage2_sources(s1: Session) -> list[FrozenTrial]:
    """The best third (at least 2) of stage 1's finished trials by their best validation value, pruned ones
    included: successive halving lets the first trials run to the end unopposed, so a pruned trial's value at
    epoch 3 can beat a complete one's. Best first."""
    if not top_trials(s1.study, 1):
        raise StudyError(f"study {s1.spec.name}: stage 1 completed no trial within its share (every trial was pruned "
                         f"or failed; see the lines above); give a larger --budget")
    finished = [t for t in s1.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
                if t.intermediate_values or trial_value(t) is not None]
    ranked = sorted(finished, key=stage1_score, reverse=True)
    return ranked[:max(2, math.ceil(len(ranked) / S2_SHARE_OF_S1))]


def copy_split(source: Session, target: Session) -> None:
    """Every stage trains and validates on stage 1's split (the same test images throughout)."""
    origin, manifest = source.folder / "split.json", target.folder / "split.json"
    if origin.is_file() and not manifest.is_file():
        target.folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(origin, manifest)


def stage2_session(run: AutoRun, stage: Stage) -> Session:
    return run.open_stage("s2", stage.image_size, stage.epochs)


def stage2_loop(run: AutoRun, s1: Session, session: Session, stage: Stage, costs: Costs, clock: StageClock) -> None:
    """Trains stage 2's waiting trials (the sources enqueued by `run_stage2`) until each has finished or the share
    is spent."""
    data = load_data(session)
    keys = {source.number for source in stage2_sources(s1)[:stage.trials]}
    objective = _objective(run, session, data, stage_budget(clock, costs, stage.image_size))
    run_until(session.study, objective, len(keys), session.storage, timeout=max(0.0, clock.left()),
              callbacks=[print_trial, clock.progress], waiting_only=True,
              trial_filter=lambda t: stage_source(t) in keys, sampler_for=session.sampler_for,
              stop_when=clock.over)


def run_stage2(run: AutoRun, s1: Session, state: RunState, stage: Stage, sources: list[FrozenTrial],
               costs: Costs) -> Session:
    """Trains each source configuration of stage 1 once more at stage 2's size and epochs (NAME.s2)."""
    with StageClock(state, "s2", stage.seconds, run.budget, run.log) as clock:  # the data's decoding counts too
        session = stage2_session(run, stage)
        copy_split(s1, session)
        sources = sources[:stage.trials]  # the plan may take fewer, to train them larger
        planned = [PlannedTrial(t.number, dict(t.params), stage_source_attributes(t)) for t in sources]
        enqueue_missing(session.study, session.storage, planned, key_of=stage_source)
        planned_keys = {source.number for source in sources}
        if run.workers is not None:
            if not clock.over():
                run.workers.run("s2", clock.deadline, most=waiting(session, lambda t: stage_source(t) in planned_keys))
        else:
            stage2_loop(run, s1, session, stage, costs, clock)
    return session


def stage3_source(s1: Session, s2: Session) -> Session:
    """The stage whose best configurations stage 3 refits: stage 2, unless it finished none."""
    return s2 if top_trials(s2.study, 1) else s1


def open_refit_stage(run: AutoRun, source: Session, stage: Stage) -> tuple[Session, RefitSettings]:
    """NAME.refit, the companion study search.refit would make, at stage 3's size, epochs and seeds."""
    settings = RefitSettings(top=stage.trials, seeds=stage.seeds, folds=0, image_size=stage.image_size,
                             epochs=stage.epochs)
    base = dataclasses.replace(run.spec, run=dataclasses.replace(run.spec.run, latency="torch", objectives=("mdice",)))
    spec = with_command_line(refit_study(base, settings), run.request.settings.with_training(
        image_size=stage.image_size, epochs=stage.epochs))
    study = optuna.create_study(study_name=spec.name, storage=source.storage, direction="maximize",
                                load_if_exists=True, pruner=build_pruner("none", spec))
    stored = refit_settings(study)
    if stored is not None and stored.get("source_study") not in (f"{run.name}.s1", f"{run.name}.s2"):
        raise StudyError(f"study {spec.name} in {safe_url(source.storage_url)} holds search.refit's runs of "
                         f"{stored.get('source_study')}, not this search.auto run's; give another --out or --storage")
    return Session(spec, source.run_dir, source.storage_url, source.storage, study, source.artifacts), settings


def stage3_loop(run: AutoRun, source: Session, stage: Stage, costs: Costs, clock: StageClock) -> None:
    """Trains the refit's waiting runs (enqueued by `run_stage3`) until each has finished or the share is spent; a
    run the budget stops keeps its best epoch so far."""
    session, settings = open_refit_stage(run, source, stage)
    plan = run_plan(top_trials(source.study, stage.trials), settings)
    split = refit_split(session, source, 0)
    data = load_data(session)
    planned = {(trial.number, seed, fold) for trial, seed, fold in plan}
    objective = _objective(run, session, data, stage_budget(clock, costs, stage.image_size, keeps_stopped=True),
                           data_for=FoldData(session, split, data))
    run_until(session.study, objective, len(plan), session.storage, timeout=max(0.0, clock.left()),
              callbacks=[print_run, clock.progress], waiting_only=True,
              trial_filter=lambda t: run_key(t) in planned, sampler_for=session.sampler_for,
              stop_when=clock.over)


def run_stage3(run: AutoRun, source: Session, state: RunState, stage: Stage, costs: Costs) -> Session:
    """Refits the best `stage.trials` configurations of `source` with `stage.seeds` seeds each (NAME.refit)."""
    with StageClock(state, "s3", stage.seconds, run.budget, run.log) as clock:  # the data's decoding counts too
        session, settings = open_refit_stage(run, source, stage)
        plan = run_plan(top_trials(source.study, stage.trials), settings)
        refit_split(session, source, 0)
        record_refit(session, source)
        enqueue_runs(session, plan, settings)
        if run.workers is not None:
            if not clock.over():
                keys = {(trial.number, seed, fold) for trial, seed, fold in plan}
                run.workers.run("s3", clock.deadline, most=waiting(session, lambda t: run_key(t) in keys))
        else:
            stage3_loop(run, source, stage, costs, clock)
    return session


def measured_correction(study: optuna.Study, costs: Costs) -> float | None:
    """The median of measured / predicted epoch seconds over the study's finished trials (None: no measure)."""
    ratios = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        record = TrialRecord.of(trial)
        seconds = [row.get("seconds", 0.0) for row in record.history or []]
        config = record.config or {}
        if not seconds or not config or min(seconds) <= 0:
            continue
        predicted = dataclasses.replace(costs, correction=1.0).epoch_seconds(
            (config["arch"], config["encoder"]), config["image_size"])
        ratios.append(statistics.median(seconds) / predicted)
    return min(4.0, max(0.25, statistics.median(ratios))) if ratios else None
