"""Train one model without a search.

Example:
    python -m polyp.train --data synthetic --arch unetplusplus --encoder mobilenet_v2 --epochs 5 --out runs/one
    python -m polyp.train --data ../shared/data/kvasir-seg --test-list ../shared/data/splits/pranet_test_kvasir.txt \
        --arch linknet --encoder resnet34 --image-size 160 --epochs 25 --out runs/linknet-r34
    python -m polyp.train --data kvasir=../shared/data/kvasir-seg --test-list kvasir=pranet_test_kvasir.txt \
        --val-data cvc=../shared/data/cvc-clinicdb --groups cvc=../shared/data/cvc-clinicdb/sequences.csv \
        --val-limit 200 --objective mean --out runs/cross-centre
"""

from __future__ import annotations

import argparse
import sys

from polyp.checkpoint import save_checkpoint
from polyp.config import load_config
from polyp.data import Split, prepare_data, training_sources, validation_sources
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
            "seconds": result.seconds, "images_per_second": result.images_per_second, "averaged": result.averaged}


def data_arguments(parser: argparse.ArgumentParser) -> None:
    """The data flags: training sets, their test lists and groups, external validation sets, the objective."""
    parser.add_argument("--data", required=True, action="append", metavar="[NAME=]FOLDER",
                        help="a training set: folder with images/ and masks/, or 'synthetic'; repeat for several "
                        "sets (NAME=FOLDER names one; each is split on its own)")
    parser.add_argument("--test-list", action="append", default=[], metavar="[NAME=]FILE",
                        help="file of a set's test image stems (e.g. the PraNet Kvasir list); NAME= with several sets")
    parser.add_argument("--groups", action="append", default=[], metavar="NAME=CSV",
                        help="a set's groups file (CSV: stem,group, e.g. CVC-ClinicDB's sequences.csv): each group "
                        "stays on one side of the split")
    parser.add_argument("--val-data", action="append", default=[], metavar="[NAME=]FOLDER",
                        help="a validation set never trained on (another centre), scored every epoch; repeatable")
    parser.add_argument("--val-limit", type=int, default=0, metavar="N",
                        help="score at most N images of each --val-data set (chosen once, seeded, by group); 0 = all")
    parser.add_argument("--objective", default="mean",
                        help="what picks the best epoch: mean (in-domain validation and every --val-data set), "
                        "worst, or a set's name (default: mean)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train one polyp segmentation model.")
    data_arguments(parser)
    parser.add_argument("--out", required=True, help="output folder: checkpoint, history.csv, split.json")
    parser.add_argument("--config", help="JSON file of TrainConfig fields (flags override it)")
    parser.add_argument("--split", help="a split.json manifest to reuse")
    parser.add_argument("--val-fraction", type=float, default=0.1,
                        help="share of each set's images for validation (selects the best epoch); 0 = train on "
                        "everything but the test images and keep the last epoch (or select by --val-data)")
    parser.add_argument("--test-fraction", type=float, default=0.1)
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--tensorboard", action="store_true", help="also log to <out>/tensorboard")
    config_arguments(parser)
    args = parser.parse_args(argv)
    try:
        cfg = config_from_args(args, load_config(args.config) if args.config else None)
        resolve_device(cfg.device)
        sources = training_sources(args.data, args.test_list, args.groups, args.val_data)
        external = validation_sources(args.val_data, args.groups, [s.name for s in sources])
        data = prepare_data(sources, cfg.image_size, args.split_seed, args.val_fraction, args.test_fraction,
                            split=Split.load(args.split) if args.split else None, external=external,
                            val_limit=args.val_limit, objective=args.objective)
        check_validation(cfg, len(data.val) + sum(map(len, data.external.values())))
        out = make_folder(args.out, "--out")
    except PolypError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    data.split.save(out / "split.json")
    print(data.describe(cfg.image_size))
    if data.external or len(data.sets) > 1:
        print(f"objective: {data.objective} (picks the best epoch)")
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
    if result.averaged:
        why = ("they scored a better validation objective than any epoch" if data.external or len(data.val)
               else "no validation images to compare them by")
        print(f"weights averaged over {result.averaged} ({why})")
    print(f"{result.status}: best epoch {result.best_epoch}, val mdice {result.best_val.get('mdice', float('nan')):.4f}, "
          f"test mdice {test.get('mdice', float('nan')):.4f} miou {test.get('miou', float('nan')):.4f}, "
          f"{result.images_per_second:.1f} img/s, {result.seconds:.0f} s")
    print(f"checkpoint: {out / 'checkpoint'}")
    return 0 if result.status != "diverged" else 1


if __name__ == "__main__":
    sys.exit(main())
