"""ONNX export of a segmentation model, checked against PyTorch with onnxruntime (deployment without PyTorch).

The ONNX graph takes the normalised input `image` (N,3,S,S float32; N may vary) and returns `logits`
(N,1,S,S); the preprocessing (resize to S, the mean and std the encoder expects) is in the checkpoint's training.json.

Example:
    >>> from polyp.checkpoint import load_checkpoint
    >>> from polyp.onnx_export import export_onnx, onnx_max_difference
    >>> model, info = load_checkpoint("runs/export/best")  # doctest: +SKIP
    >>> export_onnx(model, info.image_size, "runs/export/best/model.onnx")  # doctest: +SKIP
    >>> onnx_max_difference(model, "runs/export/best/model.onnx", info.image_size)  # doctest: +SKIP
    2.4e-07
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from polyp.io import atomic_path

INPUT_NAME, OUTPUT_NAME = "image", "logits"
ONNX_FILE = "model.onnx"  # the graph's name in a checkpoint folder (search.export --onnx)
OPSET = 17


def export_onnx(model: nn.Module, image_size: int, path: str | Path) -> Path:
    """Writes `model` (eval mode, CPU) as ONNX with a dynamic batch size, atomically.

    Args:
        model: a segmentation model returning logits (N,1,H,W).
        image_size: the square input side the model was trained at.
        path: the .onnx file to write.
    """
    model = getattr(model, "_orig_mod", model).cpu().eval()
    example = torch.zeros(1, 3, image_size, image_size)
    with atomic_path(path) as temporary, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape checks in smp's forward
        torch.onnx.export(model, (example,), str(temporary), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}, opset_version=OPSET,
                          dynamo=False)
    return Path(path)


def onnx_session(graph: str | Path | bytes, threads: int = 0):
    """An ONNX Runtime session on the CPU for a .onnx file (or its bytes) with `threads` intra-op threads
    (0: ONNX Runtime's default, every core)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return onnxruntime.InferenceSession(graph if isinstance(graph, bytes) else str(graph), options,
                                        providers=["CPUExecutionProvider"])


def onnx_graph(model: nn.Module, image_size: int) -> bytes:
    """`model` exported as ONNX (as `export_onnx` writes it), in memory."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="polyp-onnx-") as folder:
        return export_onnx(model, image_size, Path(folder) / "model.onnx").read_bytes()


@torch.no_grad()
def onnx_max_difference(model: nn.Module, path: str | Path, image_size: int, batch: int = 2, seed: int = 0) -> float:
    """The largest absolute difference between onnxruntime's and PyTorch's logits on a seeded sample input.

    Args:
        model: the PyTorch model that was exported.
        path: the .onnx file.
        image_size: the square input side.
        batch: images in the sample input (2 also checks the dynamic batch axis).
        seed: seed of the normally distributed sample input.
    """
    sample = torch.randn(batch, 3, image_size, image_size, generator=torch.Generator().manual_seed(seed))
    expected = model.cpu().eval()(sample).numpy()
    session = onnx_session(path)
    (actual,) = session.run([OUTPUT_NAME], {INPUT_NAME: sample.numpy()})
    return float(np.abs(actual - expected).max())
