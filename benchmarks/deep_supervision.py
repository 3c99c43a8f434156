"""UNet++ with and without deep supervision on Kvasir-SEG: same config and budget, several seeds.

Trains each (deep_supervision, seed) pair with `polyp.train.fit` on the PraNet split (the listed test images,
the rest split into train and validation), then scores the test images at their own resolution with
`polyp.predict` and prints one row per run and the mean per setting: validation mDice (the epoch kept),
test mDice at the training size, test mDice and mIoU at the images' own sizes, images/s in training and
minutes. Choose by validation; the test columns are for reporting.

Run one at a time on a quiet machine (the images/s column is the trainer's own measurement):
    .venv/bin/python benchmarks/deep_supervision.py --data ../shared/data/kvasir-seg \
        --test-list ../shared/data/splits/pranet_test_kvasir.txt --seeds 0 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from polyp.checkpoint import save_checkpoint
from polyp.config import TrainConfig, parse_config
from polyp.data import prepare_data
from polyp.predict import Predictor, predict_files
from polyp.train import fit


def own_size_scores(model_folder: Path, data_root: Path, stems: list[str], scratch: Path) -> tuple[float, float]:
    """Per-image mean Dice and IoU of the test images scored at their own sizes (polyp.predict's scoring)."""
    predictor, _ = Predictor.from_folder(model_folder)
    images = {path.stem: path for path in (data_root / "images").iterdir()}
    rows = predict_files(predictor, [images[stem] for stem in stems], scratch, data_root / "masks")
    return statistics.mean(r["dice"] for r in rows), statistics.mean(r["iou"] for r in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="Kvasir-SEG folder (images/, masks/)")
    parser.add_argument("--test-list", required=True, help="PraNet test list (kept out of training and validation)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--config", default="arch=unetplusplus,encoder=mobilenet_v2,encoder_depth=5,image_size=128,"
                        "epochs=12,threads=2", help="the TrainConfig fields both settings share, as key=value,...")
    args = parser.parse_args(argv)
    base = parse_config(dict(item.split("=", 1) for item in args.config.split(",")), base=TrainConfig())
    data = prepare_data(args.data, base.image_size, seed=0, test_list=args.test_list)
    print(data.describe(base.image_size))
    print(f"config: {base.arch}/{base.encoder} depth {base.encoder_depth}, {base.image_size} px, {base.epochs} epochs, "
          f"batch {base.batch_size}, lr {base.lr:g}, {base.loss}, {base.augment} augmentation, {base.precision} precision")
    header = f"{'deep_supervision':>16} {'seed':>4} {'val mDice':>9} {'test mDice':>10} {'test mDice own':>14} " \
             f"{'test mIoU own':>13} {'img/s':>6} {'minutes':>7}"
    print(header, flush=True)
    results: dict[bool, list[tuple[float, ...]]] = {False: [], True: []}
    for deep in (False, True):
        for seed in args.seeds:
            cfg = replace(base, deep_supervision=deep, seed=seed)
            started = time.perf_counter()
            result = fit(cfg, data)
            minutes = (time.perf_counter() - started) / 60
            with tempfile.TemporaryDirectory() as scratch:
                folder = save_checkpoint(result.model, cfg, Path(scratch) / "checkpoint")
                dice, iou = own_size_scores(folder, data.root, data.split.test, Path(scratch) / "predictions")
            row = (result.best_val["mdice"], result.test["mdice"], dice, iou, result.images_per_second, minutes)
            results[deep].append(row)
            print(f"{deep!s:>16} {seed:>4} {row[0]:>9.4f} {row[1]:>10.4f} {row[2]:>14.4f} {row[3]:>13.4f} "
                  f"{row[4]:>6.1f} {row[5]:>7.1f}", flush=True)
    for deep, rows in results.items():
        means = [statistics.mean(column) for column in zip(*rows, strict=True)]
        print(f"{'mean ' + str(deep):>16} {'':>4} {means[0]:>9.4f} {means[1]:>10.4f} {means[2]:>14.4f} "
              f"{means[3]:>13.4f} {means[4]:>6.1f} {means[5]:>7.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
