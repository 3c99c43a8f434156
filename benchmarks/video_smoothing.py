"""What smoothing over the previous frames does on real colonoscopy video: CVC-ClinicDB's 29 sequences.

Runs one exported model on every frame of each sequence in order (`sequences.csv`: frame -> sequence; frames
in the order of their numbers), once, then for each K of `--smooth` averages each frame's probabilities with
the previous K frames' of its sequence, as `polyp.predict --smooth K` does, and scores the masks at the frames'
own sizes: mDice over all frames, and the share of frames whose polyp flickers (the predicted mask is empty in
a frame whose neighbours both show a polyp, or shows one where both neighbours are empty: a polyp that blinks
in or out for one frame; every CVC-ClinicDB frame holds a polyp). Also prints the model's frames per second
on this machine, batch 1, as the stream loop runs it.

    .venv/bin/python benchmarks/video_smoothing.py --model exported/best --cvc ../shared/data/cvc-clinicdb --smooth 0 1 2 4
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from polyp.data import read_image, read_mask
from polyp.images import MASK_THRESHOLD, binary_mask
from polyp.metrics import dice_iou
from polyp.predict import Predictor
from polyp.video import Smoother


def sequences(cvc: Path) -> dict[int, list[str]]:
    """sequence -> its frames' stems in order."""
    frames: dict[int, list[str]] = defaultdict(list)
    with open(cvc / "sequences.csv") as handle:
        for row in csv.DictReader(handle):
            frames[int(row["sequence"])].append(row["stem"])
    return {seq: sorted(stems, key=lambda stem: int(stem) if stem.isdigit() else stem) for seq, stems in frames.items()}


def flickers(present: list[bool]) -> int:
    """Frames whose presence differs from both neighbours' (the first and last frame have one neighbour only and
    are not counted)."""
    return sum(present[i] != present[i - 1] and present[i] != present[i + 1] for i in range(1, len(present) - 1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="an exported checkpoint folder")
    parser.add_argument("--cvc", required=True, help="CVC-ClinicDB folder with images/, masks/ and sequences.csv")
    parser.add_argument("--smooth", type=int, nargs="+", default=[0, 1, 2, 4])
    parser.add_argument("--runtime", default="auto", choices=("auto", "torch", "onnx"))
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: every core)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cvc = Path(args.cvc)
    predictor, info = Predictor.from_folder(args.model, runtime=args.runtime)
    print(predictor.runtime_note or f"runtime {predictor.runtime}", flush=True)
    files = {p.stem: p for p in (cvc / "images").iterdir()}
    truths = {p.stem: p for p in (cvc / "masks").iterdir()}
    probabilities: dict[int, list[np.ndarray]] = {}
    masks: dict[int, list[np.ndarray]] = {}
    seconds, count = 0.0, 0
    for seq, stems in sequences(cvc).items():
        probabilities[seq], masks[seq] = [], []
        for stem in stems:
            image = read_image(files[stem])
            started = time.perf_counter()
            probabilities[seq].append(predictor.probabilities([image])[0])
            seconds += time.perf_counter() - started
            count += 1
            masks[seq].append(read_mask(truths[stem]))
    print(f"{count} frames in {len(probabilities)} sequences; the model at {info.image_size} px: "
          f"{count / seconds:.1f} frames per second on this machine (batch 1, {predictor.runtime})", flush=True)
    print(f"{'smooth K':>8} {'mDice':>7} {'frames flickering':>18} {'empty masks':>12}")
    for k in args.smooth:
        dices, flickering, empty = [], 0, 0
        for seq, probs in probabilities.items():
            smoother = Smoother(k)
            predicted = [binary_mask(smoother(p), MASK_THRESHOLD) for p in probs]
            dices += [float(dice_iou(torch.from_numpy(m), torch.from_numpy(t))[0]) for m, t in
                      zip(predicted, masks[seq], strict=True)]
            present = [bool(m.any()) for m in predicted]
            flickering += flickers(present)
            empty += present.count(False)
        print(f"{k:>8} {np.mean(dices):>7.4f} {100 * flickering / count:>17.2f}% {100 * empty / count:>11.2f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
