"""Training for another hospital: each robustness technique alone and all together, Kvasir-SEG -> CVC-ClinicDB.

Trains UNet++ with the ImageNet EfficientNet-Lite0 encoder (deep supervision) on Kvasir-SEG's PraNet training
images (the PraNet test list held out, the rest split into train and validation; the best epoch is chosen on
Kvasir validation only), once per technique and seed, then scores the test images at their own sizes as
`polyp.evaluate` does: the Kvasir test list and all 609 CVC-ClinicDB frames (a second hospital and camera that
no run trains or validates on). Each run's result is kept in `--out/<variant>-seed<N>.json`, so the script
goes on where it stopped; `--table` prints the table of what is there (mean and sd over the seeds).

Run one at a time on a quiet machine (one training thread leaves a core for other work):
    .venv/bin/python benchmarks/cross_centre.py --kvasir ../shared/data/kvasir-seg \
        --test-list ../shared/data/splits/pranet_test_kvasir.txt --cvc ../shared/data/cvc-clinicdb \
        --out runs/bench-cross-centre --seeds 0 1 --threads 1
    .venv/bin/python benchmarks/cross_centre.py --out runs/bench-cross-centre --table
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

from polyp.config import TrainConfig, parse_config
from polyp.data import prepare_data
from polyp.evaluate.datasets import eval_set
from polyp.evaluate.measures import summarize
from polyp.evaluate.scoring import evaluate_set
from polyp.images import MASK_THRESHOLD
from polyp.io import write_json
from polyp.models import input_normalization
from polyp.predict import Predictor
from polyp.train import fit

BASE = ("arch=unetplusplus,encoder=timm-tf_efficientnet_lite0,encoder_weights=imagenet,deep_supervision=true,"
        "image_size=192,epochs=15")
VARIANTS = {  # name -> the TrainConfig fields it changes
    "baseline": {},
    "multi_scale": {"multi_scale": True},
    "photometric": {"photometric": "strong"},
    "structure_loss": {"loss": "structure"},
    "swa": {"swa_epochs": 5},
    "all": {"multi_scale": True, "photometric": "strong", "loss": "structure", "swa_epochs": 5},
}


def run_one(cfg: TrainConfig, data, sets: dict) -> dict:
    """Trains `cfg`, scores the kept weights on every set at the images' own sizes."""
    started = time.perf_counter()
    result = fit(cfg, data, evaluate_test=False)
    minutes = (time.perf_counter() - started) / 60
    predictor = Predictor(result.model.cpu(), cfg.image_size, *input_normalization(cfg))
    scores = {}
    for name, test in sets.items():
        _, per_image, _, _ = evaluate_set(test, [predictor], "none", MASK_THRESHOLD, 8)
        summary = summarize(per_image)
        scores[name] = {"mdice": summary["dice"], "miou": summary["iou"]}
    return {"config": cfg.to_dict(), "best_epoch": result.best_epoch, "averaged": result.averaged,
            "val_mdice": result.best_val.get("mdice"), "minutes": minutes, "test": scores,
            "val_curve": [row["val_mdice"] for row in result.history]}


def table(out: Path) -> None:
    """Prints mean ± sd over the seeds of each variant that has results in `out`."""
    print(f"{'variant':<15} {'seeds':>5} {'val mDice':>15} {'Kvasir test mDice':>18} {'CVC-ClinicDB mDice':>19} {'minutes':>8}")
    for variant in VARIANTS:
        runs = [json.loads(path.read_text()) for path in sorted(out.glob(f"{variant}-seed*.json"))]
        if not runs:
            continue

        def cell(values: list[float]) -> str:
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            return f"{statistics.mean(values):.4f} ± {sd:.4f}"

        print(f"{variant:<15} {len(runs):>5} {cell([r['val_mdice'] for r in runs]):>15} "
              f"{cell([r['test']['kvasir']['mdice'] for r in runs]):>18} {cell([r['test']['cvc']['mdice'] for r in runs]):>19} "
              f"{statistics.mean(r['minutes'] for r in runs):>8.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kvasir", help="Kvasir-SEG folder (images/, masks/)")
    parser.add_argument("--test-list", help="PraNet test list (kept out of training and validation)")
    parser.add_argument("--cvc", help="CVC-ClinicDB folder: scored, never trained or validated on")
    parser.add_argument("--out", required=True, help="folder of the per-run results (the script goes on from them)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--threads", type=int, default=0, help="training threads (0 = every core)")
    parser.add_argument("--config", default=BASE, help="the TrainConfig fields every run shares, as key=value,...")
    parser.add_argument("--table", action="store_true", help="only print the table of the results in --out")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.table:
        table(out)
        return 0
    if not (args.kvasir and args.test_list and args.cvc):
        parser.error("--kvasir, --test-list and --cvc are needed to train (or give --table)")
    out.mkdir(parents=True, exist_ok=True)
    base = parse_config({**dict(item.split("=", 1) for item in args.config.split(",")), "threads": args.threads})
    data = prepare_data(args.kvasir, base.image_size, seed=0, test_list=args.test_list)
    sets = {"kvasir": eval_set("kvasir", data.root, stems=data.split.test), "cvc": eval_set("cvc", Path(args.cvc))}
    print(data.describe(base.image_size), flush=True)
    for seed in args.seeds:
        for variant in args.variants:
            path = out / f"{variant}-seed{seed}.json"
            if path.exists():
                continue
            cfg = replace(parse_config(VARIANTS[variant], base=base), seed=seed)
            print(f"{variant} seed {seed}: training ...", flush=True)
            result = run_one(cfg, data, sets)
            write_json(path, {"variant": variant, "seed": seed, **result})
            print(f"{variant} seed {seed}: val {result['val_mdice']:.4f}, Kvasir test {result['test']['kvasir']['mdice']:.4f}, "
                  f"CVC-ClinicDB {result['test']['cvc']['mdice']:.4f}, {result['minutes']:.1f} min", flush=True)
    table(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
