"""`make demo`: the search on the demo study with synthetic images, its report, and the best model exported.

It runs the commands a user would type (`search.run`, `search.analyze`, `search.export`), one after the other,
each as its own process.

Example:
    python -m search.demo --out runs
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from pathlib import Path

from search.engine.trial_loop import interrupt_on_signals

INTERRUPTED = 130


def _command(module: str, *flags: str) -> int:
    """Runs `python -m module flags...` with this interpreter; its output goes where ours goes.

    A Ctrl-C or SIGTERM to the demo reaches the command as one SIGTERM (a Ctrl-C from the terminal reaches it
    directly), so it marks its running trial failed as it does alone; the demo then ends with status 130.
    """
    child = subprocess.Popen([sys.executable, "-m", module, *flags])
    try:
        return child.wait()
    except KeyboardInterrupt as interrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:  # a terminal's Ctrl-C (SIGINT) went to the command too: it stops by itself
            child.wait(timeout=0 if "SIGTERM" in str(interrupt) else 10)
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGTERM)
            child.wait()
        return INTERRUPTED


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the demo search, analyse it and export the best model.")
    parser.add_argument("--out", default="runs", help="the demo's folder: its run folder, report and exported "
                        "model (default runs/)")
    parser.add_argument("--n-trials", type=int, default=8, help="finished trials of the demo study")
    parser.add_argument("--epochs", type=int, help="epochs per trial (default: the demo study's)")
    args = parser.parse_args(argv)
    interrupt_on_signals()
    started = time.perf_counter()
    study = ["--study", "demo", "--run-dir", args.out]
    epochs = ["--epochs", str(args.epochs)] if args.epochs else []
    model_dir = Path(args.out) / "demo" / "best-model"
    for module, flags in (("search.run", [*study, "--n-trials", str(args.n_trials), "--data", "synthetic", *epochs]),
                          ("search.analyze", study), ("search.export", [*study, "--out", str(model_dir)])):
        sys.stdout.flush()
        code = _command(module, *flags)
        if code:
            return INTERRUPTED if code < 0 else code
    report = Path(args.out) / "demo" / "report" / "index.html"
    print(f"\ndemo finished in {time.perf_counter() - started:.0f} s. Open next:")
    print(f"  the report:      {report}")
    print(f"  the dashboard:   .venv/bin/python -m search.dashboard --study demo --run-dir {args.out}")
    print(f"  the best model:  {model_dir}  (try: .venv/bin/python -m polyp.predict --model {model_dir} "
          f"--input <image or folder> --out predictions/)")
    print(f"  a web page:      .venv/bin/python -m polyp.serve --model {model_dir} --examples synthetic")
    return 0


if __name__ == "__main__":
    sys.exit(main())
