"""Speed of the trainer's default training step against plain float32, of prediction, and of the data pipeline.

Both training steps are `polyp.train.loop.TrainStep` on copies of one model: the default one with the config
as given (channels-last, bf16 autocast where the processor supports it, ...), the plain one with
`precision="fp32", channels_last=False, compile=False`. Steps are timed in alternating rounds and the fastest
round counts, which keeps other processes on a shared machine from favouring either side. FLOPs come from
`torch.utils.flop_counter`; the peak is a 2048x2048 matrix product timed in the same run.

Example:
    python -m polyp.bench --arch unetplusplus --encoder mobilenet_v2 --image-size 256 --batch-size 8
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import itertools
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from polyp.config import TrainConfig
from polyp.data import ImageSet, prepare_data
from polyp.errors import PolypError
from polyp.models import build_model, input_normalization
from polyp.predict import Predictor
from polyp.runtime import count_float32_convolutions, resolve_device
from polyp.train.loader import AUTO, loader_workers, train_loader
from polyp.train.loop import TrainStep, train_one_epoch
from polyp.train.options import config_arguments, config_from_args

SCHEDULE_STEPS = 100_000  # steps per epoch given to the schedule, so one-cycle never runs out while timing


@dataclass
class Speed:
    """Throughput of one variant: seconds per batch of the fastest round and the batch's FLOPs."""

    name: str
    seconds_per_batch: float
    batch_size: int
    flops_per_batch: int

    @property
    def images_per_second(self) -> float:
        return self.batch_size / self.seconds_per_batch

    @property
    def gflops_per_second(self) -> float:
        return self.flops_per_batch / self.seconds_per_batch / 1e9


def matmul_gflops(dtype: torch.dtype, size: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of the fastest of `repeats` timed `size`x`size` matrix products in `dtype`."""
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    for _ in range(3):
        torch.mm(a, b)
    products = 4
    best = min(_seconds(lambda: torch.mm(a, b), products) for _ in range(repeats)) / products
    return 2 * size**3 / best / 1e9


def _seconds(work: Callable[[], object], times: int) -> float:
    start = time.perf_counter()
    for _ in range(times):
        work()
    return time.perf_counter() - start


def describe(cfg: TrainConfig, step: TrainStep) -> str:
    """What the default step uses, e.g. "channels-last, bfloat16 autocast (4 strided depthwise convolutions in
    float32), 2 threads"."""
    parts = ["channels-last" if cfg.channels_last else "contiguous"]
    parts.append(f"{str(step.dtype).removeprefix('torch.')} autocast" if step.dtype else "float32")
    if kept := count_float32_convolutions(step.model):
        parts[-1] += f" ({kept} strided depthwise convolutions in float32)"
    if cfg.compile:
        parts.append("torch.compile")
    parts.append(f"{torch.get_num_threads()} threads")
    return ", ".join(parts)


def plain_config(cfg: TrainConfig) -> TrainConfig:
    """The plain float32 variant of `cfg`: same model and optimizer, no autocast, contiguous, not compiled."""
    return dataclasses.replace(cfg, precision="fp32", channels_last=False, compile=False)


def make_steps(cfg: TrainConfig, device: torch.device) -> dict[str, TrainStep]:
    """The plain float32 and the default TrainStep, on copies of one freshly built model."""
    torch.manual_seed(cfg.seed)
    model = build_model(cfg).to(device)
    return {"plain float32": TrainStep(plain_config(cfg), copy.deepcopy(model), device, SCHEDULE_STEPS),
            "default": TrainStep(cfg, model, device, SCHEDULE_STEPS)}


def random_batch(cfg: TrainConfig, image_size: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images and 0/1 float masks shaped like the trainer's batches."""
    generator = torch.Generator().manual_seed(cfg.seed)
    images = torch.randint(0, 256, (batch_size, 3, image_size, image_size), dtype=torch.uint8, generator=generator)
    masks = (torch.rand(batch_size, 1, image_size, image_size, generator=generator) > 0.7).float()
    return images, masks


def training_flops(step: TrainStep, images: torch.Tensor, masks: torch.Tensor) -> int:
    """FLOPs of one training step (forward and backward) counted by torch.utils.flop_counter."""
    step.model.train()
    with FlopCounterMode(display=False) as counter:
        step.train(images, masks)
    return counter.get_total_flops()


def prediction_flops(step: TrainStep, images: torch.Tensor) -> int:
    """FLOPs of one forward pass in eval mode."""
    step.model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        step.model(step.normalize(images))
    return counter.get_total_flops()


def predictors(steps: dict[str, TrainStep], cfg: TrainConfig) -> dict[str, Predictor]:
    """`polyp.predict`'s Predictor on copies of one model: plain float32, and its default (the trainer's precision
    and channels-last). Both copy the plain step's model, as a loaded checkpoint is."""
    plain = steps["plain float32"]
    return {"plain float32": Predictor(copy.deepcopy(plain.model), cfg.image_size, *input_normalization(cfg), device=str(plain.device),
                                       precision="fp32", channels_last=False),
            "default": Predictor(copy.deepcopy(plain.model), cfg.image_size, *input_normalization(cfg), device=str(plain.device),
                                 precision=cfg.precision, channels_last=cfg.channels_last)}


def time_rounds(work: dict[str, Callable[[], object]], warmup: int, steps: int, rounds: int) -> dict[str, float]:
    """Seconds per call of each work item: warm-up calls, then `rounds` alternating rounds; the fastest counts.

    Returns the per-call seconds and, under "<name> warm-up", the seconds of each item's first call.
    """
    first = {}
    for name, call in work.items():
        first[f"{name} warm-up"] = _seconds(call, 1)
        _seconds(call, max(0, warmup - 1))
    best = {name: float("inf") for name in work}
    for _ in range(rounds):
        for name, call in work.items():
            best[name] = min(best[name], _seconds(call, steps) / steps)
    return best | first


def bench_training(steps: dict[str, TrainStep], cfg: TrainConfig, args: argparse.Namespace) -> tuple[list[Speed], dict]:
    """Training speed of each step on one random batch; also returns the warm-up seconds."""
    images, masks = random_batch(cfg, cfg.image_size, cfg.batch_size)
    flops = training_flops(steps["plain float32"], images, masks)
    for step in steps.values():
        step.model.train()
    work = {name: (lambda s=step: s.train(images, masks)) for name, step in steps.items()}
    seconds = time_rounds(work, args.warmup, args.steps, args.rounds)
    return [Speed(name, seconds[name], cfg.batch_size, flops) for name in steps], seconds


def bench_prediction(steps: dict[str, TrainStep], cfg: TrainConfig, args: argparse.Namespace) -> list[Speed]:
    """Speed of `polyp.predict`'s forward pass (Predictor.logits) at `args.predict_size` px."""
    images, _ = random_batch(cfg, args.predict_size, args.predict_batch)
    flops = prediction_flops(steps["plain float32"], images)
    work = {name: (lambda p=predictor: p.logits(images)) for name, predictor in predictors(steps, cfg).items()}
    seconds = time_rounds(work, args.warmup, args.steps, args.rounds)
    return [Speed(name, seconds[name], args.predict_batch, flops) for name in steps]


@dataclass
class TrainingImages:
    """The decoded training images the data-pipeline measurements use."""

    source: str  # the data folder, or "synthetic" when it does not exist
    images: ImageSet
    load_seconds: float  # decoding (or reading the decoded cache)


def training_images(cfg: TrainConfig, data: str) -> TrainingImages:
    """The training split of `data` (synthetic if it is absent), decoded at `cfg.image_size`."""
    source = data if Path(data).is_dir() else "synthetic"
    started = time.perf_counter()
    images = prepare_data(source, cfg.image_size).train
    return TrainingImages(source, images, time.perf_counter() - started)


def bench_loader(cfg: TrainConfig, images: ImageSet, device: torch.device, workers: int, batches: int) -> float:
    """Images/s the trainer's loader delivers with no model, with `workers` processes (after its first batch)."""
    loader = train_loader(dataclasses.replace(cfg, loader_workers=workers), images,
                          torch.Generator().manual_seed(cfg.seed), device)
    served, counted, started = 0, 0, 0.0
    while served <= batches:  # epochs over the loader until `batches` batches after the first
        for batch, _ in loader:
            if served == 0:
                started = time.perf_counter()  # worker start-up and the first batch are not counted
            else:
                counted += len(batch)
            served += 1
            if served > batches:
                break
    return counted / (time.perf_counter() - started)


def bench_data_wait(cfg: TrainConfig, device: torch.device, data: TrainingImages, steps: int) -> dict[str, float | str]:
    """Share of training time spent waiting for the trainer's batches of `data`.

    Runs `train_one_epoch` with the default step over `steps` batches of the trainer's own loader
    (0 = a whole epoch).
    """
    images = data.images
    torch.manual_seed(cfg.seed)
    step = TrainStep(cfg, build_model(cfg).to(device), device, SCHEDULE_STEPS)
    loader = train_loader(cfg, images, torch.Generator().manual_seed(cfg.seed), device)
    batches = itertools.islice(loader, steps) if steps else loader
    epoch = train_one_epoch(step, batches)
    return {"source": data.source, "images": len(images), "load_seconds": data.load_seconds,
            "batches": steps or len(loader), **epoch}


def format_speeds(title: str, speeds: list[Speed], peak_bf16: float) -> list[str]:
    """Table rows: images/s, seconds per batch, GFLOP/s and share of the bf16 matrix-product peak."""
    lines = [f"{title:<34}{'images/s':>10}{'s/batch':>10}{'GFLOP/s':>10}{'of bf16 peak':>14}"]
    for speed in speeds:
        lines.append(f"  {speed.name:<32}{speed.images_per_second:>10.2f}{speed.seconds_per_batch:>10.3f}"
                     f"{speed.gflops_per_second:>10.1f}{speed.gflops_per_second / peak_bf16:>13.0%}")
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating timing rounds; the fastest counts")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per variant first")
    parser.add_argument("--peak-size", type=int, default=2048, help="side of the square matrices timed for the peak")
    parser.add_argument("--predict-size", type=int, default=352, help="prediction input side in pixels")
    parser.add_argument("--predict-batch", type=int, default=8, help="images per prediction batch")
    parser.add_argument("--data", default="../shared/data/kvasir-seg",
                        help="data folder for the data-wait measurement (synthetic when it does not exist)")
    parser.add_argument("--wait-steps", type=int, default=30,
                        help="batches of the real loader for the data-wait share; 0 = a whole epoch, -1 = skip")
    parser.add_argument("--loader-batches", type=int, default=30, help="batches timed for the loader-only figures")
    parser.add_argument("--workers-sweep", type=int, metavar="N",
                        help="also print the loader-only images/s for 0, 1, ..., N loader workers")
    parser.add_argument("--loader-only", action="store_true",
                        help="measure only the data pipeline (no model): the loader-only figures")
    config_arguments(parser)
    return parser.parse_args(argv)


def loader_lines(cfg: TrainConfig, device: torch.device, data: TrainingImages, args: argparse.Namespace,
                 step_images_per_second: float | None) -> list[str]:
    """The loader-only figures (no model): the trainer's worker count, a sweep if asked, and the bottleneck."""
    workers = loader_workers(cfg, device)
    rate = bench_loader(cfg, data.images, device, workers, args.loader_batches)
    note = "" if data.source != "synthetic" else " (data folder not found: synthetic images instead)"
    lines = [f"data pipeline: {data.source}{note}, {len(data.images)} training images at {cfg.image_size} px, augment "
             f"{cfg.augment}, decoded/loaded once in {data.load_seconds:.1f} s",
             f"  loader only (no model), {workers} worker(s) (loader_workers {cfg.loader_workers}"
             f"{' = auto' if cfg.loader_workers == AUTO else ''}): {rate:.1f} images/s"]
    for count in range(args.workers_sweep + 1) if args.workers_sweep is not None else ():
        lines.append(f"  loader only, {count} worker(s): {bench_loader(cfg, data.images, device, count, args.loader_batches):.1f} images/s")
    if step_images_per_second is not None:
        slower = "the model" if step_images_per_second < rate else "the data pipeline"
        lines.append(f"  bottleneck at {cfg.image_size} px on {device.type}: {slower} (training step "
                     f"{step_images_per_second:.1f} images/s, loader {rate:.1f} images/s)")
    return lines


def run(args: argparse.Namespace, cfg: TrainConfig, emit: Callable[[str], None] = print) -> None:
    """Runs every measurement and emits the report's lines as they come, the speed-up last."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    if args.loader_only:
        for line in loader_lines(cfg, device, training_images(cfg, args.data), args, None):
            emit(line)
        return
    peak = {dtype: matmul_gflops(dtype, args.peak_size) for dtype in (torch.float32, torch.bfloat16)}
    steps = make_steps(cfg, device)
    training, seconds = bench_training(steps, cfg, args)
    prediction = bench_prediction(steps, cfg, args)
    plain, default = training
    lines = [
        f"polyp.bench: {cfg.arch}/{cfg.encoder} depth {cfg.encoder_depth}, {cfg.image_size} px, batch {cfg.batch_size}, "
        f"{device.type}, torch {torch.__version__}",
        f"default step: {describe(cfg, steps['default'])}",
        f"matrix-product peak ({args.peak_size}x{args.peak_size}, this run): float32 {peak[torch.float32]:.0f} GFLOP/s, "
        f"bfloat16 {peak[torch.bfloat16]:.0f} GFLOP/s",
        f"training FLOPs (forward+backward, torch.utils.flop_counter): {plain.flops_per_batch / cfg.batch_size / 1e9:.1f} "
        f"GFLOP per image",
        f"first step: plain {seconds['plain float32 warm-up']:.1f} s, default {seconds['default warm-up']:.1f} s "
        f"(oneDNN set-up{', compilation' if cfg.compile else ''})",
        "",
        *format_speeds(f"training step ({cfg.image_size} px)", training, peak[torch.bfloat16]),
        "",
        *format_speeds(f"prediction ({args.predict_size} px, batch {args.predict_batch})", prediction,
                       peak[torch.bfloat16]),
        f"  speed-up of default prediction over plain float32: "
        f"{prediction[1].images_per_second / prediction[0].images_per_second:.1f}x",
        "",
    ]
    for line in lines:
        emit(line)
    data = training_images(cfg, args.data)
    for line in loader_lines(cfg, device, data, args, default.images_per_second):
        emit(line)
    if args.wait_steps >= 0:
        for line in data_wait_lines(bench_data_wait(cfg, device, data, args.wait_steps), cfg):
            emit(line)
    emit(f"speed-up of the default training step over plain float32: "
         f"{default.images_per_second / plain.images_per_second:.1f}x")


def data_wait_lines(wait: dict, cfg: TrainConfig) -> list[str]:
    """The data-pipeline part of the report."""
    return [
        f"  {wait['batches']} batches of the trainer's loader: {wait['images_per_second']:.2f} images/s, "
        f"waiting for batches {wait['data_wait_fraction']:.1%} of the time",
        "",
    ]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        run(args, config_from_args(args), lambda line: print(line, flush=True))
    except PolypError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
