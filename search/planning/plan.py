"""search.auto's plan: three stages and the delivery, each with its image size, epochs, trials and share of
the budget, sized from the machine's step times (`search.planning.step_times`).

Stage 1 searches many configurations small and short with successive halving; stage 2 trains the best third
of them again at a larger size; stage 3 refits the best configurations at the final size, as large as the
budget affords (at most `max_size`), with a second seed when the largest size leaves room. The plan is made
again at the start of each stage from the time left (and from how far the trials so far ran over or under
their estimates), so later stages shrink when earlier ones ran long.

Example:
    >>> from search.planning.step_times import StepTimes
    >>> times = StepTimes(64, {("unet", "resnet18"): 0.001}, {64: 1.0, 96: 2.2}, 0.0)
    >>> costs = Costs(times, train_images=80, val_images=10)
    >>> plan = make_plan(600, 0.0, costs, [64, 96])
    >>> [stage.name for stage in plan.stages]
    ['s1', 's2', 's3']
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from search.planning.budget import format_duration, minutes
from search.planning.step_times import StepTimes
from search.study.errors import CommandLineError

SHARES = {"s1": 0.25, "s2": 0.20, "s3": 0.55}  # of the budget left after timing and delivery
DELIVER_SHARE, DELIVER_MIN_S = 0.06, 60.0  # choosing, exporting (ONNX), scoring every set, the model card
DELIVER_FIXED_S = 45.0  # exporting with ONNX, checking it, timing its latency, drawing the card
DELIVER_PASSES = 8  # forward passes per image at most: d4 test-time augmentation (the choice tries it on every
# validation image, per refit configuration)
RESERVE_ROUNDS = 3  # the delivery's reserve and stage 3's size settle within a few rounds
SCORE_S = 0.1  # the literature's measures of one image at its own size (Sα, Eφ, Fβw, HD95: pysodmetrics)
EPOCHS = {"s1": 4, "s2": 6, "s3": 16}  # per trial: short (pruned at 1 and 3), longer, a full refit
PRUNED_COST = 0.55  # successive halving (rungs at 1 and 3 of 4 epochs) stops about two trials in three early:
# a stage-1 trial costs about this share of a full one on average
MAX_S1_TRIALS = 60
S2_SHARE_OF_S1 = 3  # stage 2 trains the best third of stage 1's complete trials (at least 2)
S3_CONFIGS = 2  # configurations refit in stage 3
VAL_COST = 0.35  # a validation image (forward pass only) costs about this share of a training image's step
EPOCH_OVERHEAD = 1.15  # data loading, augmentation and the schedule on top of the step itself
TRIAL_OVERHEAD_S = 8.0  # per trial: building the model, timing it, scoring the test split, writing its files
STAGE_NAMES = {"s1": "search", "s2": "larger", "s3": "refit"}


@dataclass(frozen=True)
class Costs:
    """Predicted seconds of an epoch and of a trial of a model, from the step times and the data's size."""

    times: StepTimes
    train_images: int
    val_images: int
    correction: float = 1.0  # measured epoch seconds / predicted, of the trials run so far (1: none yet)
    scored_images: int = 0  # images the delivery scores: the test split and every --eval-data set

    def epoch_seconds(self, model: tuple[str, str], image_size: int) -> float:
        step = self.times.seconds_per_image(*model, image_size)
        return step * (self.train_images + VAL_COST * self.val_images) * EPOCH_OVERHEAD * self.correction

    def trial_seconds(self, model: tuple[str, str], image_size: int, epochs: int) -> float:
        return epochs * self.epoch_seconds(model, image_size) + TRIAL_OVERHEAD_S

    def deliver_seconds(self, models: list[tuple[str, str]], runs: int, image_size: int) -> float:
        """About how long the delivery takes with the refit's `runs` models of `models` at `image_size`: the choice's
        d4 passes of every run over the validation images, one model's d4 passes over every scored image (a
        costlier choice is made only where it fits: search.planning.choice), and each image's measures."""
        forward = VAL_COST * self.correction * sum(self.times.seconds_per_image(*m, image_size) for m in models) / len(models)
        passes = DELIVER_PASSES * (runs * self.val_images + self.scored_images)
        return DELIVER_FIXED_S + passes * forward + SCORE_S * (self.val_images + self.scored_images)

    def mean_trial_seconds(self, image_size: int, epochs: int) -> float:
        models = list(self.times.per_image)
        return sum(self.trial_seconds(model, image_size, epochs) for model in models) / len(models)


@dataclass(frozen=True)
class Stage:
    """One stage as planned: its size, length, trials and share of the budget."""

    name: str  # s1 | s2 | s3
    image_size: int
    epochs: int
    trials: int  # s1: trials to sample; s2: configurations; s3: configurations (each `seeds` runs)
    seconds: float  # its share of the budget
    seeds: int = 1

    def describe(self) -> str:
        what = {"s1": f"{self.trials} trials searched (successive halving)",
                "s2": f"the best {self.trials} of stage 1 again",
                "s3": f"the best {self.trials} of stage 2 refit, {self.seeds} seed{'s' * (self.seeds > 1)} each"}[self.name]
        return (f"{self.name} {STAGE_NAMES[self.name]:>6}: {what}, {self.image_size} px, {self.epochs} epochs, "
                f"{minutes(self.seconds)}")


@dataclass(frozen=True)
class Plan:
    """The stages still to run, the delivery, and what was spent before them."""

    budget: float
    spent: float
    stages: tuple[Stage, ...]
    deliver: float
    workers: int = 1
    begun: tuple[tuple[str, float], ...] = ()  # seconds already spent in a stage of the plan (begun before a resume)

    def stage(self, name: str) -> Stage:
        return next(stage for stage in self.stages if stage.name == name)

    def lines(self) -> list[str]:
        begun = dict(self.begun)  # in `spent` already: only what a begun stage has left is added
        total = (self.spent + sum(max(0.0, stage.seconds - begun.get(stage.name, 0.0)) for stage in self.stages)
                 + max(0.0, self.deliver - begun.get("deliver", 0.0)))
        side = f", {self.workers} workers side by side" if self.workers > 1 else ""
        return [f"plan for a budget of {format_duration(self.budget)} ({minutes(self.spent)} spent before it{side}):",
                *(f"  {stage.describe()}" for stage in self.stages),
                f"  deliver: choose on validation, export with ONNX, score every set, model card, {minutes(self.deliver)}",
                f"  adds up to {minutes(total)} of {minutes(self.budget)}"]


def deliver_seconds(budget: float) -> float:
    """The delivery's least reserve: 6% of the budget, at least a minute (more where its images need it:
    Costs.deliver_seconds)."""
    return max(DELIVER_MIN_S, DELIVER_SHARE * budget)


def minimum_budget(costs: Costs, sizes: list[int]) -> float:
    """The smallest budget the three stages fit in: one 2-epoch trial of the fastest model at the smallest
    size in each stage's share, and the delivery (scoring its images with that model)."""
    fastest = min(costs.times.per_image, key=costs.times.per_image.get)
    one = costs.trial_seconds(fastest, sizes[0], 2)
    return one / min(SHARES.values()) + max(DELIVER_MIN_S, costs.deliver_seconds([fastest], 1, sizes[0]))


def check_budget(budget: float, spent: float, costs: Costs, sizes: list[int]) -> None:
    """Refuses a budget too small for the stages, saying what it would need."""
    needed = minimum_budget(costs, sizes)
    if budget < spent + needed:
        fastest = min(costs.times.per_image, key=costs.times.per_image.get)
        raise CommandLineError(
            f"--budget {format_duration(budget)}: too small; on this machine one 2-epoch trial of the fastest model "
            f"({'/'.join(fastest)}) at {sizes[0]} px takes {minutes(costs.trial_seconds(fastest, sizes[0], 2))}, and "
            f"the three stages with the delivery need at least {format_duration(math.ceil(spent + needed))}"
            + (f" ({minutes(spent)} already spent)" if spent else "") + ": give a larger --budget")


def stage1(seconds: float, costs: Costs, size: int, workers: int = 1) -> Stage:
    per_trial = PRUNED_COST * costs.mean_trial_seconds(size, EPOCHS["s1"])
    trials = max(2, min(MAX_S1_TRIALS, int(workers * seconds // per_trial)))
    return Stage("s1", size, EPOCHS["s1"], trials, seconds)


def _largest_fit(seconds: float, sizes: list[int], cost) -> int | None:
    fitting = [size for size in sizes if cost(size) <= seconds]
    return max(fitting) if fitting else None


def _fitting_epochs(seconds: float, per_epoch: float, runs: int, most: int, workers: int = 1) -> int:
    in_turn = math.ceil(runs / workers)  # runs each worker trains one after the other
    return max(1, min(most, int((seconds / in_turn - TRIAL_OVERHEAD_S) // max(per_epoch, 1e-9))))


def wall_seconds(runs: list[float], workers: int) -> float:
    """About how long `workers` processes take for runs of these seconds, each taking the next when it is free."""
    ends = [0.0] * max(1, workers)
    for seconds in sorted(runs, reverse=True):
        ends[ends.index(min(ends))] += seconds
    return max(ends)


def stage2(seconds: float, costs: Costs, sizes: list[int], models: list[tuple[str, str]], workers: int = 1) -> Stage:
    """The best third of stage 1 (`models`, best first) at the largest size above stage 1's whose runs fit the
    share; else the best of them, as many as fit there (at least 2); else all at the next size with fewer epochs
    (at least 3); else at stage 1's size with as many epochs as fit."""
    epochs = EPOCHS["s2"]
    larger = sizes[1:] or sizes
    for count in range(len(models), min(2, len(models)) - 1, -1):  # a larger size over more configurations
        chosen = models[:count]
        size = _largest_fit(seconds, larger, lambda s, c=chosen: wall_seconds(
            [costs.trial_seconds(m, s, epochs) for m in c], workers))
        if size is not None:
            return Stage("s2", size, epochs, count, seconds)
    for size, least in ((larger[0], 3), (sizes[0], 1)):
        per_epoch = max(costs.epoch_seconds(m, size) for m in models)
        fitting = _fitting_epochs(seconds, per_epoch, len(models), epochs, workers)
        if fitting >= least:
            break
    return Stage("s2", size, fitting, len(models), seconds)


def stage3(seconds: float, costs: Costs, sizes: list[int], models: list[tuple[str, str]], workers: int = 1) -> Stage:
    """The best configurations (`models`, best first) at the largest size that fits, a second seed when the
    largest candidate size leaves room for it; one configuration and fewer epochs when nothing fits."""
    epochs = EPOCHS["s3"]

    def cost(size: int, seeds: int = 1, chosen=models) -> float:
        return wall_seconds([costs.trial_seconds(m, size, epochs) for m in chosen] * seeds, workers)

    for chosen in (models, models[:1]):
        size = _largest_fit(seconds, sizes, lambda s, c=chosen: cost(s, 1, c))
        if size is not None:
            seeds = 2 if size == sizes[-1] and cost(size, 2, chosen) <= seconds else 1
            free = workers // len(chosen)  # workers that would wait idle: their seeds cost no wall time
            if free > seeds and cost(size, free, chosen) <= seconds:
                seeds = free
            return Stage("s3", size, epochs, len(chosen), seconds, seeds)
    size = sizes[0]
    epochs = _fitting_epochs(seconds, costs.epoch_seconds(models[0], size), 1, epochs)
    return Stage("s3", size, epochs, 1, seconds)


def make_plan(budget: float, spent: float | dict[str, float], costs: Costs, sizes: list[int],
              s2_models: list | None = None, s3_models: list | None = None, fixed: dict[str, Stage] | None = None,
              done: set[str] = frozenset(), workers: int = 1) -> Plan:
    """The stages not yet finished, sized to the time left.

    Args:
        budget: the whole budget, seconds.
        spent: seconds spent so far (timing and the stages run before), in all or by part (timing, s1, ...).
        costs: the cost model.
        sizes: candidate image sizes, smallest first (stage 1 trains at the first).
        s2_models, s3_models: the models of stage 2's and stage 3's configurations once known (before: the
            mean model, as many as planned).
        fixed: stages whose plan stands (begun before a resume, or finished): kept as they are; what a begun one
            has left of its share is not shared out again.
        done: the finished stages (left out of the plan).
        workers: processes that train each stage's trials side by side (`--workers`; the step times are
            those of one of them).
    """
    fixed = fixed or {}
    by_part = spent if isinstance(spent, dict) else {}
    spent = sum(by_part.values()) if isinstance(spent, dict) else spent
    reserved = sum(max(0.0, stage.seconds - by_part.get(name, 0.0)) for name, stage in fixed.items() if name not in done)
    todo = [name for name in SHARES if name not in fixed]
    mean_model = min(costs.times.per_image, key=lambda m: abs(costs.times.per_image[m] - sum(
        costs.times.per_image.values()) / len(costs.times.per_image)))

    def stages_with(deliver: float) -> dict[str, Stage]:
        left = max(0.0, budget - spent - deliver - reserved)
        share = {name: left * SHARES[name] / sum(SHARES[n] for n in todo) for name in todo}
        stages = dict(fixed)
        if "s1" not in stages:
            stages["s1"] = stage1(share["s1"], costs, sizes[0], workers)
        if "s2" not in stages:
            count = max(2, math.ceil(stages["s1"].trials * (1 - PRUNED_COST) / S2_SHARE_OF_S1))
            stages["s2"] = stage2(share["s2"], costs, sizes, s2_models or [mean_model] * count, workers)
        if "s3" not in stages:
            stages["s3"] = stage3(share["s3"], costs, sizes, s3_models or [mean_model] * S3_CONFIGS, workers)
        return stages

    deliver = deliver_seconds(budget)
    stages = stages_with(deliver)
    for _ in range(RESERVE_ROUNDS):  # many images to score: the stages make room, and a smaller s3 needs less
        final = stages["s3"]
        needed = max(deliver_seconds(budget), costs.deliver_seconds(
            (s3_models or [mean_model])[:final.trials], final.trials * final.seeds, final.image_size))
        if "s3" in fixed or abs(needed - deliver) < 1.0:
            break
        deliver = needed
        stages = stages_with(deliver)
    ordered = tuple(stages[name] for name in SHARES)
    planned = tuple(stage for stage in ordered if stage.name not in done)
    begun = [(name, by_part[name]) for name in [stage.name for stage in planned] + ["deliver"] if by_part.get(name)]
    return Plan(budget, spent, planned, deliver, workers, tuple(begun))


def with_seconds(stage: Stage, seconds: float) -> Stage:
    return replace(stage, seconds=seconds)
