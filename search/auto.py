"""One command from a data folder and a time budget to a shipped, documented model:
`python -m search.auto --data ~/data/kvasir-seg --test-list pranet_test_kvasir.txt --budget 2h --out runs/auto`.

It times a training step of each model of the space on this machine, prints the plan (three stages and the
delivery, each with its size, epochs, trials and minutes), then runs it within the budget: stage 1 searches the
space small and short with successive halving (study NAME.s1), stage 2 trains the best third again at a larger
size (NAME.s2), stage 3 refits the best configurations at the largest size the budget affords (NAME.refit, as
search.refit does). It then chooses on validation alone what to ship (one model or an ensemble, TTA, threshold),
exports it with ONNX into `--out/model`, scores it on the test split and every `--eval-data` set into
`--out/evaluation`, and writes the model card `--out/MODEL_CARD.md` and `--out/model_card.html`.

No trial starts that cannot train an epoch within its stage's share, a running one stops after the epoch past
which another would overrun it, and each stage is planned again from the time left, so the run ends within the
budget. One line per trial says the stage's and the run's time and what is left; they also go to
`--out/progress.log`. The same command again goes on where it stopped (Ctrl-C leaves every study consistent); a
finished run prints where its model is. `--workers N` trains each stage's trials in N processes that share the
stage's study (search.planning.stage_workers); the plan counts them.

Example:
    python -m search.auto --data synthetic --budget 10m --out runs/auto-demo
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import optuna

from polyp.config import TrainConfig
from polyp.data import PolypData
from polyp.evaluate.datasets import named_folders
from polyp.runtime import resolve_device
from search.cli import USER_ERRORS, add_worker_options, fail, import_trainer
from search.engine.record import auto_attribute, kept_run_data
from search.engine.session import Session, StudyRequest, load_data, writable_run_dir
from search.engine.storage import default_storage_url, open_storage, safe_url
from search.engine.trial_loop import interrupt_on_signals, top_trials
from search.engine.workers import plan_workers
from search.planning.budget import format_duration, minutes, parse_budget
from search.planning.card_content import build_card
from search.planning.choice import choose
from search.planning.clock import StageClock, WorkerClock, write_log
from search.planning.delivery import export_choice, extra_sets, score_sets, test_sets
from search.planning.plan import EPOCHS, S3_CONFIGS, SHARES, Costs, Plan, check_budget, make_plan
from search.planning.stage_workers import StageWorkers
from search.planning.stages import (
    AutoRun,
    measured_correction,
    model_of,
    open_refit_stage,
    run_stage1,
    run_stage2,
    run_stage3,
    stage1_loop,
    stage2_loop,
    stage2_session,
    stage2_sources,
    stage3_loop,
    stage3_source,
)
from search.planning.state import RunState, differences
from search.planning.step_times import measure
from search.study.errors import StudyError
from search.study.forced import CommandSettings
from search.study.imagenet import with_local_encoders

MAX_SIZE = 352
SIZE_STEP = 32
DATA_FLAGS = ("data", "test_list", "groups", "val_data", "val_limit", "objective", "seed")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="From a data folder and a time budget to an exported, documented "
                                                 "model: plan, search, refit, choose, export, evaluate, model card.")
    parser.add_argument("--data", action="append", required=True, metavar="[NAME=]FOLDER",
                        help="a training set (images/ and masks/), or 'synthetic'; repeat for several")
    parser.add_argument("--test-list", action="append", metavar="[NAME=]FILE", help="a set's test image stems")
    parser.add_argument("--groups", action="append", metavar="NAME=CSV", help="a set's groups file (stem,group)")
    parser.add_argument("--val-data", action="append", metavar="[NAME=]FOLDER",
                        help="a validation set never trained on, scored every epoch; repeatable")
    parser.add_argument("--val-limit", type=int, metavar="N", help="score at most N images of each --val-data set")
    parser.add_argument("--objective", help="mean (default), worst, or a set's name: what ranks the trials")
    parser.add_argument("--eval-data", action="append", default=[], metavar="[NAME=]FOLDER",
                        help="another test set the delivered model is scored on (never used to choose); repeatable")
    parser.add_argument("--budget", required=True, help="wall time for everything: 90m, 2h, 1h30m, 45s or seconds")
    parser.add_argument("--out", required=True, help="the run folder: optuna.db, trials, model/, evaluation/, the card")
    parser.add_argument("--study", default="pretrained", help="the space: a study name or .toml (default pretrained)")
    parser.add_argument("--storage", help="SQLAlchemy URL (default: SQLite OUT/optuna.db)")
    parser.add_argument("--max-image-size", type=int, default=MAX_SIZE,
                        help=f"largest image size the refit may choose (default {MAX_SIZE})")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="default: auto")
    parser.add_argument("--threads", type=int, help="torch threads, 0 = every core (default: the study's; with "
                        "--workers on the CPU, cores / N each)")
    parser.add_argument("--loader-workers", type=int, help="processes preparing each trial's batches, -1 = auto")
    parser.add_argument("--seed", type=int, help="sampler and split seed (default: the study's)")
    parser.add_argument("--heartbeat", type=int, default=15, help="seconds between a running trial's heartbeats")
    parser.add_argument("--quiet", action="store_true", help="no line per epoch")
    parser.add_argument("--trainer", default="polyp.train:fit", help="training function module:name (tests: a fake)")
    add_worker_options(parser)
    parser.add_argument("--stage-worker", choices=("s1", "s2", "s3"), help=argparse.SUPPRESS)  # one of --workers
    parser.add_argument("--stage-deadline", type=float, help=argparse.SUPPRESS)  # its stage's end (Unix time)
    return parser.parse_args(argv)


def candidate_sizes(smallest: int, largest: int) -> list[int]:
    """Stage 1's size (the study's), then every multiple of 32 above it up to `largest`."""
    if largest < smallest:
        raise StudyError(f"--max-image-size {largest}: below the study's image size {smallest}")
    return [smallest] + [size for size in range(smallest - smallest % SIZE_STEP + SIZE_STEP, largest + 1, SIZE_STEP)]


def candidate_models(run: AutoRun) -> list[tuple[str, str]]:
    space, base = run.spec.space, run.spec.base
    archs = space.get("arch", [base.arch])
    encoders = space.get("encoder", [base.encoder])
    return [(arch, encoder) for arch in archs for encoder in encoders]


MACHINE_FIELDS = ("device", "threads", "loader_workers")  # may change between runs: they change speed, not models


def run_inputs(run: AutoRun, max_size: int) -> dict:
    """What a resumed run must share with the stored one: its data, its space (each searched field and each fixed
    training field but the machine's), its largest size."""
    space = {f"space {key}": repr(value) for key, value in sorted(run.spec.space.items())}
    fixed = {f"train {key}": value for key, value in sorted(dataclasses.asdict(run.spec.base).items())
             if key not in MACHINE_FIELDS}
    return {**kept_run_data(run.spec.run), "seed": run.spec.run.seed, "study": run.name, **space, **fixed,
            "max_image_size": max_size}


def check_stored_run(storage, url: str, run: AutoRun, inputs: dict, out: Path) -> None:
    """Refuses to go on with a run folder's stored run under other inputs, naming what differs."""
    for summary in optuna.get_all_study_summaries(storage):
        stored = auto_attribute(summary, "inputs")
        if stored is None:
            continue
        if summary.study_name != f"{run.name}.s1":
            raise StudyError(f"{safe_url(url)} holds the search.auto run of study {summary.study_name[:-3]!r}, not "
                             f"{run.name!r}; give --study {summary.study_name[:-3]} to go on with it, or another --out "
                             f"(or --storage) for a new run")
        if changed := differences(stored, inputs):
            raise StudyError(f"{out}: its run was started with other inputs ({'; '.join(changed)}); give the same "
                             f"ones to go on with it, or another --out (or --storage) for a new run")


def stage_workers(args: argparse.Namespace, argv: list[str], base: TrainConfig) -> StageWorkers | None:
    """The worker processes of `--workers N` (None: this process trains)."""
    if args.workers == 1 and not args.devices:
        return None
    return StageWorkers(plan_workers(args.workers, args.devices, args.device, argv, base))


def open_run(args: argparse.Namespace, budget: float, argv: list[str]) -> tuple[AutoRun, Session, PolypData, RunState]:
    out = writable_run_dir(args.out)
    given = {key: getattr(args, key) for key in DATA_FLAGS if getattr(args, key) is not None}
    training = {key: getattr(args, key) for key in ("device", "threads", "loader_workers")
                if getattr(args, key) is not None}
    request = StudyRequest(study=args.study, storage=args.storage, run_dir=str(out), heartbeat=args.heartbeat,
                           settings=CommandSettings(run=given, training=training))
    spec, note = with_local_encoders(request.spec())
    if note:
        print(note, flush=True)
    named_folders(args.eval_data)  # a mistyped --eval-data is refused now, not after the training
    run = AutoRun(spec, request, budget, import_trainer(args.trainer), not args.quiet, out / "progress.log",
                  stage_workers(args, argv, spec.base))
    url = args.storage or default_storage_url(out)
    inputs = run_inputs(run, args.max_image_size)
    check_stored_run(open_storage(url, args.heartbeat), url, run, inputs, out)
    sizes = candidate_sizes(spec.base.image_size, args.max_image_size)
    s1 = run.open_stage("s1", sizes[0], EPOCHS["s1"])
    state = RunState(s1.study)
    if state.inputs() is None:
        state.record_inputs(inputs)
    return run, s1, load_data(s1), state


def timing_config(run: AutoRun) -> TrainConfig:
    """The config steps are timed with: on this device, at the threads each trial trains with (a worker's share
    of the cores under --workers)."""
    threads = run.workers.threads(run.spec.base.threads) if run.workers is not None else run.spec.base.threads
    return dataclasses.replace(run.spec.base, device=str(resolve_device(run.spec.base.device)), threads=threads)


def validation_images(data: PolypData) -> int:
    """The images every epoch validates on: the split's and every --val-data set's."""
    return len(data.val) + sum(len(images) for images in data.external.values())


def costs_of(run: AutoRun, data: PolypData, state: RunState, sizes: list[int], scored: int = 0) -> Costs:
    """The cost model from the step times: every model at stage 1's size first (a budget too small is refused
    then, before the larger sizes are timed), then the slowest at every size. `scored`: the images the delivery
    scores (the test split and every --eval-data set)."""
    base = timing_config(run)
    val = validation_images(data)
    for timed_sizes in (sizes[:1], sizes):
        times = measure(candidate_models(run), base, timed_sizes)
        state.set_spent("timing", state.spent().get("timing", 0.0) + times.seconds)
        costs = Costs(times, len(data.train), val, state.correction(), scored)
        if len(timed_sizes) == 1 and not state.stages():
            check_budget(run.budget, state.total_spent(), costs, sizes)
    return costs


def grow_begun_stage(state: RunState, budget: float) -> None:
    """A rerun with a larger --budget gives the stage it left unfinished its share of the difference."""
    before = state.budget()
    state.record_budget(budget)
    if before is None or budget <= before:
        return
    for name, stage in state.stages().items():
        if not state.done(name):
            state.record_stage(dataclasses.replace(stage, seconds=stage.seconds + (budget - before) * SHARES[name]))


def update_correction(state: RunState, session: Session, costs: Costs) -> Costs:
    measured = measured_correction(session.study, costs)
    if measured is None:
        return costs
    state.record_correction(measured)
    return dataclasses.replace(costs, correction=measured)


def plan_now(run: AutoRun, state: RunState, costs: Costs, sizes: list[int], **models) -> Plan:
    done = {name for name in ("s1", "s2", "s3") if state.done(name)}
    return make_plan(run.budget, state.spent(), costs, sizes, fixed=state.stages(), done=done,
                     workers=run.workers.count if run.workers is not None else 1, **models)


def say(run: AutoRun, line: str) -> None:
    print(line, flush=True)
    write_log(run.log, line)


def drive(run: AutoRun, s1: Session, data: PolypData, state: RunState, args: argparse.Namespace,
          started: float) -> int:
    sizes = candidate_sizes(run.spec.base.image_size, args.max_image_size)
    timed = state.spent().get("timing", 0.0)
    scored = len(data.test) + sum(len(data_set.pairs) for data_set in extra_sets(args.eval_data))
    costs = costs_of(run, data, state, sizes, scored)
    grow_begun_stage(state, run.budget)
    timed = state.spent().get("timing", 0.0) - timed
    state.set_spent("setup", state.spent().get("setup", 0.0) + time.time() - started - timed)  # storage, data
    say(run, f"search.auto {run.name}: {data.describe(sizes[0])}")
    for line in plan_now(run, state, costs, sizes).lines():
        say(run, line)
    if not state.done("s1"):
        stage = state.stages().get("s1") or plan_now(run, state, costs, sizes).stage("s1")
        state.record_stage(stage)
        run_stage1(run, s1, data, state, stage, costs)
        if not top_trials(s1.study, 1):
            raise StudyError(f"study {s1.spec.name}: stage 1 completed no trial within its share (see the lines above); "
                             f"run the command again with a larger --budget")
        state.mark_done("s1")
        costs = update_correction(state, s1, costs)
    sources = stage2_sources(s1)
    if not state.done("s2"):
        stage = state.stages().get("s2") or plan_now(run, state, costs, sizes,
                                                     s2_models=[model_of(t) for t in sources]).stage("s2")
        state.record_stage(stage)
        say(run, f"auto: {stage.describe()}")
        s2 = run_stage2(run, s1, state, stage, sources, costs)
        state.mark_done("s2")
        costs = update_correction(state, s2, costs)
    else:
        s2 = stage2_session(run, state.stages()["s2"])
    source = stage3_source(s1, s2)
    if not state.done("s3"):
        stage = state.stages().get("s3") or plan_now(run, state, costs, sizes, s3_models=[
            model_of(t) for t in top_trials(source.study, S3_CONFIGS)]).stage("s3")
        state.record_stage(stage)
        say(run, f"auto: {stage.describe()}")
        refit = run_stage3(run, source, state, stage, costs)
        if not top_trials(refit.study, 1):
            raise StudyError(f"study {refit.spec.name}: stage 3 completed no refit run within its share (see the lines "
                             f"above); run the command again with a larger --budget")
        state.mark_done("s3")
    else:
        refit = open_refit_stage(run, source, state.stages()["s3"])[0]
    return deliver(run, s1, source, refit, state, args)


def deliver(run: AutoRun, s1: Session, source: Session, refit: Session, state: RunState,
            args: argparse.Namespace) -> int:
    out = Path(args.out)
    share = run.budget - state.total_spent() + state.spent().get("deliver", 0.0)  # a resumed delivery's share
    with StageClock(state, "deliver", max(0.0, share), run.budget, run.log) as clock:
        sets = test_sets(refit) + extra_sets(args.eval_data)
        choice = choose(refit, deadline=clock.deadline, scored_images=sum(len(data.pairs) for data in sets))
        say(run, f"auto deliver: chose {choice.describe()}")
        facts, latency, difference = export_choice(refit, choice, out / "model")
        say(run, f"auto deliver: exported to {out / 'model'} (ONNX checked: max difference {difference:.2g}); "
                 f"{latency.describe()}")
        results = score_sets(out / "model", sets, choice, out / "evaluation")
    card = build_card(run.name, s1, source, refit, choice, facts, latency, results, state.stages(), state.spent(),
                      run.budget, out)
    markdown, page = card.write(out)
    state.record_delivered(str(out / "model"))
    spent = state.total_spent()
    for result in results:
        say(run, f"  {result.name}: mDice {result.summary['dice']:.4f}, mIoU {result.summary['iou']:.4f}, "
                 f"mDice over thresholds {result.mdice_thresholds:.4f} ({result.summary['images']} images)")
    say(run, f"search.auto {run.name}: done in {format_duration(spent)} of {format_duration(run.budget)} "
             f"({100 * spent / run.budget:.1f}%); model {out / 'model'}, card {markdown} and {page}, scores "
             f"{out / 'evaluation'}")
    print(f"use it: python -m polyp.predict --model {out / 'model'} --input IMAGE_OR_FOLDER --out predictions/ "
          f"--tta {choice.tta} --threshold {choice.threshold:g}")
    return 0


def work_stage(args: argparse.Namespace, argv: list[str]) -> int:
    """One of the --workers processes: trains the stage's trials until its deadline (the command keeps the time)."""
    budget = parse_budget(args.budget)
    run, s1, data, state = open_run(args, budget, argv)
    name = args.stage_worker
    stage = state.stages().get(name)
    if stage is None or args.stage_deadline is None:
        raise StudyError(f"--stage-worker {name}: the run in {args.out} has not begun stage {name}; run the command "
                         f"without --stage-worker (search.auto starts its workers itself)")
    sizes = candidate_sizes(run.spec.base.image_size, args.max_image_size)
    costs = Costs(measure(candidate_models(run), timing_config(run), sizes), len(data.train), validation_images(data),
                  state.correction())
    clock = WorkerClock(state, name, stage.seconds, budget, args.stage_deadline, run.log)
    if name == "s1":
        stage1_loop(run, s1, data, stage, costs, clock)
    elif name == "s2":
        stage2_loop(run, s1, stage2_session(run, stage), stage, costs, clock)
    else:
        stage3_loop(run, stage3_source(s1, stage2_session(run, state.stages()["s2"])), stage, costs, clock)
    return 0


def main(argv: list[str] | None = None) -> int:
    started = time.time()
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    interrupt_on_signals()
    try:
        if args.stage_worker:
            return work_stage(args, argv)
        budget = parse_budget(args.budget)
        run, s1, data, state = open_run(args, budget, argv)
        if delivered := state.delivered():
            print(f"search.auto {run.name}: this run is finished ({minutes(state.total_spent())} of "
                  f"{minutes(budget)}); its model is {delivered}, its card {Path(args.out) / 'MODEL_CARD.md'}")
            return 0
        return drive(run, s1, data, state, args, started)
    except USER_ERRORS as error:
        return fail(str(error))
    except KeyboardInterrupt:
        print("\ninterrupted: the running trial is marked FAIL and the time spent is kept; run the same command "
              "again to go on.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
