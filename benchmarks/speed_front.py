"""Accuracy against speed: a small two-objective search on Kvasir-SEG, its models scored on the test list and timed.

1. `search.run --objectives mdice latency_ms` of a study (default `pretrained`) on Kvasir-SEG with the PraNet
   test list held out: validation mDice maximised, milliseconds per frame minimised, every trial trained to
   the end (multi-objective TPE; Optuna does not prune two-objective studies).
2. Every complete trial exported (`search.export --trial N --onnx`) and scored by `polyp.evaluate` at the
   images' own sizes on the test list.
3. Every exported model timed again once the search is over, on a quiet machine: one frame (batch 1), the median
   of the timed runs after warm-up (`polyp.latency`), with PyTorch as `polyp.predict` runs it and with ONNX
   Runtime, at the trial's size and at `--fps-size` (256 px: the issue's real-time target), `--time-threads`
   threads (default: every core).
It prints one row per trial (the validation Pareto front and the test-list Pareto front marked), the frames
per second of the fastest and of the most accurate model, and keeps the rows in `--out/speed_front.json`.
Running it again resumes the search and skips what is exported and scored.

    .venv/bin/python benchmarks/speed_front.py --kvasir ../shared/data/kvasir-seg \
        --test-list ../shared/data/splits/pranet_test_kvasir.txt --study pretrained --trials 8 \
        --image-size 128 --epochs 4 --threads 1 --out runs/bench-speed-front
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import optuna
from commands import evaluated_mdice, step  # benchmarks/commands.py, beside this script

from polyp.checkpoint import load_checkpoint
from polyp.latency import measure_latency
from polyp.onnx_export import ONNX_FILE
from search.engine.record import TrialRecord, trial_value
from search.results.report.speed import SpeedPoint, pareto_front
from search.study.definition import load_study

KEYS = ("arch", "encoder", "encoder_depth", "decoder_attention", "lr", "batch_size", "loss", "augment")


def timed(folder: Path, size: int, threads: int) -> dict:
    """The exported model's ms per frame at `size`: PyTorch and ONNX Runtime (at the export's own size, the
    exported graph; at another size, a graph exported at that size in memory)."""
    model, info = load_checkpoint(folder)
    onnx_path = folder / ONNX_FILE if size == info.image_size and (folder / ONNX_FILE).is_file() else None
    latency = measure_latency(model, size, "cpu", threads, onnx=True, onnx_path=onnx_path)
    return {"torch_ms": latency.torch_ms, "onnx_ms": latency.onnx_ms, "fastest_ms": latency.fastest_ms}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kvasir", required=True)
    parser.add_argument("--test-list", required=True)
    parser.add_argument("--study", default="pretrained")
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--sampler", default="tpe")
    parser.add_argument("--threads", type=int, default=2, help="training threads per trial")
    parser.add_argument("--fps-size", type=int, default=256, help="also time every model at this size")
    parser.add_argument("--time-threads", type=int, default=0, help="threads of the final timing (0: every core)")
    parser.add_argument("--out", default="runs/bench-speed-front")
    args = parser.parse_args(argv)
    out, python = Path(args.out), sys.executable
    run_dir = out / "search"
    data = ["--data", f"kvasir={args.kvasir}", "--test-list", f"kvasir={args.test_list}"]
    step("search", [python, "-m", "search.run", "--study", args.study, "--run-dir", str(run_dir), *data,
                    "--objectives", "mdice", "latency_ms", "--sampler", args.sampler, "--n-trials", str(args.trials),
                    "--image-size", str(args.image_size), "--epochs", str(args.epochs), "--threads", str(args.threads),
                    "--quiet"])
    study = optuna.load_study(study_name=load_study(args.study).name, storage=f"sqlite:///{run_dir / 'optuna.db'}")
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    threads = args.time_threads or os.cpu_count() or 1
    rows = []
    for trial in complete:
        export = out / f"trial-{trial.number}"
        if not (export / "training.json").is_file():
            step(f"export trial {trial.number}", [python, "-m", "search.export", "--study", args.study, "--run-dir",
                                                  str(run_dir), "--trial", str(trial.number), "--onnx", "--out", str(export)])
        evaluation = out / f"evaluation-trial-{trial.number}"
        if not (evaluation / "summary.csv").is_file():
            step(f"evaluate trial {trial.number}", [python, "-m", "polyp.evaluate", "--model", str(export),
                                                    "--data", f"kvasir={args.kvasir}", "--test-list", args.test_list,
                                                    "--out", str(evaluation)])
        record = TrialRecord.of(trial)
        own, large = timed(export, args.image_size, threads), timed(export, args.fps_size, threads)
        rows.append({"trial": trial.number, "val_mdice": trial_value(trial), "test_mdice": float(evaluated_mdice(evaluation)),
                     "search_ms": trial.values[1], "onnx_ms": own["onnx_ms"], "torch_ms": own["torch_ms"],
                     "fastest_ms": own["fastest_ms"], f"fps_{args.fps_size}": 1000 / large["fastest_ms"],
                     f"ms_{args.fps_size}": large, "config": {k: record.config.get(k) for k in KEYS}})
    if not rows:
        print("no complete trial")
        return 1
    val_front = {t.number for t in study.best_trials}
    test_front = {point.number for point in pareto_front(
        [SpeedPoint(row["trial"], row["test_mdice"], row["onnx_ms"], "onnx", "") for row in rows])}
    fps = f"fps_{args.fps_size}"
    print(f"\n{len(rows)} complete trials at {args.image_size} px, {args.epochs} epochs; timed with {threads} threads "
          f"(v: on the search's Pareto front, validation score against the ms timed in the search, the faster "
          f"runtime; t: on the test-list front of mDice against the ONNX Runtime ms timed here)")
    print(f"{'trial':>5} {'front':>5} {'val mDice':>9} {'test mDice':>10} {'ONNX ms':>8} {'torch ms':>8} "
          f"{f'fps at {args.fps_size}':>10}  config")
    for row in sorted(rows, key=lambda r: r["onnx_ms"]):
        mark = ("v" if row["trial"] in val_front else "") + ("t" if row["trial"] in test_front else "")
        settings = " ".join(f"{k}={v}" for k, v in row["config"].items() if v is not None)
        print(f"{row['trial']:>5} {mark:>5} {row['val_mdice']:>9.4f} {row['test_mdice']:>10.4f} {row['onnx_ms']:>8.1f} "
              f"{row['torch_ms']:>8.1f} {row[fps]:>10.1f}  {settings}")
    fastest = min(rows, key=lambda r: r["fastest_ms"])  # with the runtime polyp.predict --runtime auto keeps
    accurate = max(rows, key=lambda r: r["val_mdice"])  # the one a search would deliver: chosen by validation
    for name, row in (("fastest", fastest), ("most accurate (by validation)", accurate)):
        print(f"{name}: trial {row['trial']}, {1000 / row['fastest_ms']:.1f} fps at {args.image_size} px, "
              f"{row[fps]:.1f} fps at {args.fps_size} px, test mDice {row['test_mdice']:.4f}")
    (out / "speed_front.json").write_text(json.dumps({"image_size": args.image_size, "epochs": args.epochs,
                                                      "threads": threads, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
