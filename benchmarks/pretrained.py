"""From scratch against ImageNet-initialised encoders on Kvasir-SEG: same config, same budget.

Trains each (architecture, encoder weights) pair with `polyp.train.fit` on the PraNet split (the listed test
images, the rest split into train and validation), then scores the test images at their own resolution as
`polyp.evaluate` does. Prints one row per run: validation mDice (the epoch kept), the first epoch whose
validation mDice reached `--target`, test mDice and mIoU at the images' own sizes, and minutes; then each run's
validation mDice per epoch. Choose by validation; the test columns are for reporting.

Run one at a time on a quiet machine:
    .venv/bin/python benchmarks/pretrained.py --data ../shared/data/kvasir-seg \
        --test-list ../shared/data/splits/pranet_test_kvasir.txt --archs linknet unetplusplus
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace

from polyp.config import TrainConfig, parse_config
from polyp.data import prepare_data
from polyp.evaluate.datasets import eval_set
from polyp.evaluate.measures import summarize
from polyp.evaluate.scoring import evaluate_set
from polyp.images import MASK_THRESHOLD
from polyp.models import input_normalization
from polyp.predict import Predictor
from polyp.train import fit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="Kvasir-SEG folder (images/, masks/)")
    parser.add_argument("--test-list", required=True, help="PraNet test list (kept out of training and validation)")
    parser.add_argument("--archs", nargs="+", default=["linknet", "unetplusplus"])
    parser.add_argument("--weights", nargs="+", default=["none", "imagenet"], help="encoder_weights values to compare")
    parser.add_argument("--target", type=float, default=0.80, help="validation mDice whose first epoch is reported")
    parser.add_argument("--config", default="encoder=timm-tf_efficientnet_lite0,image_size=160,epochs=15,threads=2",
                        help="the TrainConfig fields every run shares, as key=value,...")
    args = parser.parse_args(argv)
    base = parse_config(dict(item.split("=", 1) for item in args.config.split(",")), base=TrainConfig())
    data = prepare_data(args.data, base.image_size, seed=0, test_list=args.test_list)
    test = eval_set("test", data.root, stems=data.split.test)
    print(data.describe(base.image_size))
    print(f"config: {base.encoder} depth {base.encoder_depth}, {base.image_size} px, {base.epochs} epochs, "
          f"batch {base.batch_size}, lr {base.lr:g}, {base.loss}, {base.augment} augmentation, {base.precision} precision")
    print(f"{'arch':>13} {'weights':>8} {'val mDice':>9} {'epoch >= ' + str(args.target):>13} {'test mDice own':>14} "
          f"{'test mIoU own':>13} {'minutes':>7}", flush=True)
    curves = {}
    for arch in args.archs:
        for weights in args.weights:
            cfg = replace(base, arch=arch, encoder_weights=weights)
            started = time.perf_counter()
            result = fit(cfg, data)
            minutes = (time.perf_counter() - started) / 60
            predictor = Predictor(result.model.cpu(), cfg.image_size, *input_normalization(cfg))
            _, scores, _, _ = evaluate_set(test, [predictor], "none", MASK_THRESHOLD, 8)
            summary = summarize(scores)
            curve = [row["val_mdice"] for row in result.history]
            reached = next((epoch for epoch, value in enumerate(curve, 1) if value >= args.target), None)
            curves[(arch, weights)] = curve
            print(f"{arch:>13} {weights:>8} {result.best_val['mdice']:>9.4f} {reached or 'never':>13} "
                  f"{summary['dice']:>14.4f} {summary['iou']:>13.4f} {minutes:>7.1f}", flush=True)
    print("validation mDice per epoch:")
    for (arch, weights), curve in curves.items():
        print(f"  {arch} {weights}: " + " ".join(f"{value:.3f}" for value in curve))
    return 0


if __name__ == "__main__":
    sys.exit(main())
