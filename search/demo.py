"""`make demo`: the search on the demo study with synthetic images, its report, and the best model exported.

Example:
    python -m search.demo --out runs
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the demo search, analyse it and export the best model.")
    parser.add_argument("--out", default="runs", help="run folder (default runs/)")
    parser.add_argument("--n-trials", type=int, default=8, help="finished trials of the demo study")
    parser.add_argument("--epochs", type=int, help="epochs per trial (default: the demo study's)")
    args = parser.parse_args(argv)
    from search import analyze, export, run

    started = time.perf_counter()
    study = ["--study", "demo"]
    epochs = ["--epochs", str(args.epochs)] if args.epochs else []
    code = run.main([*study, "--n-trials", str(args.n_trials), "--data", "synthetic", "--out", args.out, *epochs])
    if code:
        return code
    code = analyze.main([*study, "--out", args.out])
    if code:
        return code
    model_dir = Path(args.out) / "demo" / "best-model"
    code = export.main([*study, "--run-dir", args.out, "--out", str(model_dir)])
    if code:
        return code
    report = Path(args.out) / "demo" / "report" / "index.html"
    print(f"\ndemo finished in {time.perf_counter() - started:.0f} s. Open next:")
    print(f"  the report:      {report}")
    print(f"  the dashboard:   .venv/bin/python -m search.dashboard --study demo --out {args.out}")
    print(f"  the best model:  {model_dir}  (try: .venv/bin/python -m polyp.predict --model {model_dir} "
          f"--input <image or folder> --out predictions/)")
    print(f"  a web page:      .venv/bin/python -m polyp.serve --model {model_dir} --examples synthetic")
    return 0


if __name__ == "__main__":
    sys.exit(main())
