"""Train one model without a search.

Example:
    python -m polyp.train --data synthetic --arch unetplusplus --encoder mobilenet_v2 --epochs 5 --out runs/one
    python -m polyp.train --data ../shared/data/kvasir-seg --test-list ../shared/data/splits/pranet_test_kvasir.txt \
        --arch linknet --encoder resnet34 --image-size 160 --epochs 25 --out runs/linknet-r34
"""

from __future__ import annotations

import argparse
import sys

from polyp.checkpoint import save_checkpoint
from polyp.config import load_config
from polyp.data import Split, prepare_data
from polyp.errors import PolypError
from polyp.io import make_folder, write_json
from polyp.runtime import resolve_device
from polyp.train.history import write_history
from polyp.train.loop import TrainResult, check_validation, fit
from polyp.train.options import config_arguments, config_from_args
from polyp.train.reporter import PrintReporter, Reporters, TensorBoardReporter


def _summary(result: TrainResult) -> dict:
    """The JSON-able facts of a run: status, best epoch, metrics, speed."""
    return {"status": result.status, "reason": result.reason, "best_epoch": result.best_epoch,
            "val": result.best_val, "test": result.test, "parameters": result.parameters,
            "seconds": result.seconds, "images_per_second": result.images_per_second}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train one polyp segmentation model.")
    parser.add_argument("--data", required=True, help="folder with images/ and masks/, or 'synthetic'")
    parser.add_argument("--out", required=True, help="output folder: checkpoint, history.csv, split.json")
    parser.add_argument("--config", help="JSON file of TrainConfig fields (flags override it)")
    parser.add_argument("--test-list", help="file of test image stems (e.g. the PraNet Kvasir list)")
    parser.add_argument("--split", help="a split.json manifest to reuse")
    parser.add_argument("--val-fraction", type=float, default=0.1,
                        help="share of all images for validation (selects the best epoch); 0 = train on everything "
                        "but the test images and keep the last epoch")
    parser.add_argument("--test-fraction", type=float, default=0.1)
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--tensorboard", action="store_true", help="also log to <out>/tensorboard")
    config_arguments(parser)
    args = parser.parse_args(argv)
    try:
        cfg = config_from_args(args, load_config(args.config) if args.config else None)
        resolve_device(cfg.device)
        data = prepare_data(args.data, cfg.image_size, args.split_seed, args.val_fraction, args.test_fraction,
                            args.test_list, Split.load(args.split) if args.split else None)
        check_validation(cfg, len(data.val))
        out = make_folder(args.out, "--out")
    except PolypError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    data.split.save(out / "split.json")
    print(data.describe(cfg.image_size))
    for note in data.notes():
        print(note)
    reporters = Reporters([PrintReporter(total_epochs=cfg.epochs),
                           TensorBoardReporter(out / "tensorboard") if args.tensorboard else None])
    result = fit(cfg, data, reporters)
    write_history(out / "history.csv", result.history)
    facts = _summary(result)
    write_json(out / "result.json", facts)
    if result.best_epoch:
        save_checkpoint(result.model, cfg, out / "checkpoint", {"metrics": {"val": result.best_val, "test": result.test},
                                                                "data": str(data.root)})
    test = result.test or {}
    print(f"{result.status}: best epoch {result.best_epoch}, val mdice {result.best_val.get('mdice', float('nan')):.4f}, "
          f"test mdice {test.get('mdice', float('nan')):.4f} miou {test.get('miou', float('nan')):.4f}, "
          f"{result.images_per_second:.1f} img/s, {result.seconds:.0f} s")
    print(f"checkpoint: {out / 'checkpoint'}")
    return 0 if result.status != "diverged" else 1


if __name__ == "__main__":
    sys.exit(main())
