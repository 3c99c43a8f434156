"""Inference latency per frame: batch 1 at the model's input size, the median of repeated timed runs after
warm-up. PyTorch runs as `polyp.predict` does (`Predictor.logits`: channels-last, bf16 autocast where the
device has it); ONNX Runtime runs the exported graph on the CPU (`polyp.onnx_export`).

A model's latency depends on its architecture and input size, not on its weights, so an untrained model of a
config times as the trained one does. On a busy machine (other trainings beside it) the figures are slower
than on an idle one; the median keeps single interruptions out.

Example:
    >>> from polyp.latency import measure_latency
    >>> measure_latency(model, 256, threads=2)  # doctest: +SKIP
    Latency(torch_ms=41.2, onnx_ms=28.7, image_size=256, device='cpu', threads=2)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from polyp.checkpoint import build_model_for
from polyp.config import TrainConfig
from polyp.onnx_export import INPUT_NAME, OUTPUT_NAME, onnx_graph, onnx_session
from polyp.predict import Predictor
from polyp.runtime import resolve_device
from polyp.timing import REPEATS, WARMUP, median_ms


@dataclass(frozen=True)
class Latency:
    """Milliseconds per frame (batch 1) of one model at `image_size` on `device` with `threads` CPU threads
    (0: every core); `onnx_ms` is None where ONNX Runtime was not timed (not asked for, or not on the CPU)."""

    torch_ms: float
    onnx_ms: float | None
    image_size: int
    device: str
    threads: int

    @property
    def fastest_ms(self) -> float:
        """The faster of the two runtimes."""
        return min(ms for ms in (self.torch_ms, self.onnx_ms) if ms is not None)

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        """E.g. "41.2 ms per frame with PyTorch, 28.7 ms with ONNX Runtime (256 px, batch 1, cpu, 2 threads)"."""
        onnx = f", {self.onnx_ms:.1f} ms with ONNX Runtime" if self.onnx_ms is not None else ""
        threads = {0: "every core", 1: "1 thread"}.get(self.threads, f"{self.threads} threads")
        return (f"{self.torch_ms:.1f} ms per frame with PyTorch{onnx} ({self.image_size} px, batch 1, {self.device}, "
                f"{threads})")


def torch_latency_ms(model: nn.Module, image_size: int, device: str = "cpu", warmup: int = WARMUP,
                     repeats: int = REPEATS, precision: str = "auto") -> float:
    """Milliseconds per frame of `model` on `device` as polyp.predict runs it (one uint8 frame at the input size;
    `precision` as its --precision: "auto" is bf16 autocast where the device has it)."""
    predictor = Predictor(model, image_size, device=device, precision=precision)
    frame = torch.zeros(1, 3, image_size, image_size, dtype=torch.uint8)
    synchronize = torch.cuda.synchronize if predictor.device.type == "cuda" else (lambda: None)

    def run() -> None:
        predictor.logits(frame)
        synchronize()

    return median_ms(run, warmup, repeats)


def onnx_latency_ms(path: str | Path | bytes, image_size: int, threads: int = 0, warmup: int = WARMUP,
                    repeats: int = REPEATS) -> float:
    """Milliseconds per frame of the exported graph at `path` (or its bytes) with ONNX Runtime on the CPU."""
    session = onnx_session(path, threads)
    frame = np.zeros((1, 3, image_size, image_size), np.float32)
    return median_ms(lambda: session.run([OUTPUT_NAME], {INPUT_NAME: frame}), warmup, repeats)


def measure_latency(model: nn.Module, image_size: int, device: str = "cpu", threads: int = 0, onnx: bool = True,
                    onnx_path: str | Path | None = None) -> Latency:
    """Times `model` with PyTorch on `device` and, on the CPU with `onnx`, with ONNX Runtime on its exported graph
    (`onnx_path` when it exists already, else exported to a temporary file). `threads` CPU threads are used by
    both (0: every core); PyTorch's own thread setting is put back afterwards."""
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        torch_ms = torch_latency_ms(model, image_size, device)
    finally:
        torch.set_num_threads(previous)
    onnx_ms = None
    if onnx and torch.device(device).type == "cpu":
        graph = onnx_path if onnx_path is not None and Path(onnx_path).is_file() else onnx_graph(model, image_size)
        onnx_ms = onnx_latency_ms(graph, image_size, threads)
    return Latency(round(torch_ms, 3), None if onnx_ms is None else round(onnx_ms, 3), image_size,
                   torch.device(device).type, threads)


def config_latency(cfg: TrainConfig, onnx: bool = True) -> Latency:
    """The latency of `cfg`'s model at `cfg.image_size` on `cfg.device` with `cfg.threads` threads, timed on an
    untrained model of the config (no weights are fetched; the weights do not change the time)."""
    return measure_latency(build_model_for(cfg), cfg.image_size, str(resolve_device(cfg.device)), cfg.threads, onnx)
