"""Which runtime predicts faster on this CPU: PyTorch (as polyp.predict runs it) or ONNX Runtime?

Times one frame (batch 1) of untrained models of the shipped studies' architectures with the ImageNet
EfficientNet-Lite0 encoder (the weights do not change the time) at `--image-size`, with each thread count,
as `polyp.latency` times every trial: the median of `--repeats` runs after 3 untimed ones. Prints ms per frame
and frames per second of each runtime (PyTorch also in plain float32) and which is faster than PyTorch's
default. Run it on an idle machine: another process on
the same cores slows both sides unevenly.

    .venv/bin/python benchmarks/runtime.py --image-size 256 --threads 1 2
"""

from __future__ import annotations

import argparse
import sys

import torch

from polyp.checkpoint import build_model_for
from polyp.config import parse_config
from polyp.latency import onnx_latency_ms, torch_latency_ms
from polyp.onnx_export import onnx_graph

MODELS = ("linknet", "unet", "fpn", "unetplusplus")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--encoder", default="timm-tf_efficientnet_lite0")
    parser.add_argument("--archs", nargs="+", default=list(MODELS))
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args(argv)
    print(f"batch 1 at {args.image_size} px, encoder {args.encoder}, median of {args.repeats} runs; torch "
          f"{torch.__version__}", flush=True)
    print("PyTorch: polyp.predict's default (channels-last, bf16 autocast where the CPU has it); fp32: --precision fp32")
    print(f"{'model':<14} {'threads':>7} {'PyTorch ms':>10} {'fp32 ms':>8} {'ONNX ms':>8} {'PyTorch fps':>11} "
          f"{'ONNX fps':>8}  faster")
    wins = {"PyTorch": 0, "ONNX Runtime": 0}
    for arch in args.archs:
        cfg = parse_config({"arch": arch, "encoder": args.encoder, "image_size": args.image_size})
        model = build_model_for(cfg).eval()
        graph = onnx_graph(model, args.image_size)
        for threads in args.threads:
            torch.set_num_threads(threads)
            torch_ms = torch_latency_ms(model, args.image_size, repeats=args.repeats)
            fp32_ms = torch_latency_ms(model, args.image_size, repeats=args.repeats, precision="fp32")
            onnx_ms = onnx_latency_ms(graph, args.image_size, threads, repeats=args.repeats)
            faster = "PyTorch" if torch_ms < onnx_ms else "ONNX Runtime"
            wins[faster] += 1
            print(f"{arch:<14} {threads:>7} {torch_ms:>10.1f} {fp32_ms:>8.1f} {onnx_ms:>8.1f} {1000 / torch_ms:>11.1f} "
                  f"{1000 / onnx_ms:>8.1f}  {faster} ({max(torch_ms, onnx_ms) / min(torch_ms, onnx_ms):.2f}x)",
                  flush=True)
    print("faster in " + ", ".join(f"{name} {count}" for name, count in wins.items()) + " of the cases")
    return 0


if __name__ == "__main__":
    sys.exit(main())
