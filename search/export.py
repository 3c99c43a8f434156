"""Export the best trial (or trial N) of a study as a checkpoint folder that `polyp.predict` and
`segmentation_models_pytorch.from_pretrained` load: config.json, model.safetensors, training.json (the
TrainConfig, validation and test metrics, study, trial, preprocessing), and with --onnx a checked model.onnx.

A trial that kept no checkpoint (pruned or failed) is refused unless --retrain trains its config again. The
study's run folder (where its checkpoints are) is found from the study unless --run-dir names it; --out is
the export folder.

Example:
    python -m search.export --study demo --out exported/demo-best --onnx
    python -m search.export --study demo --trial 3 --retrain --out exported/demo-trial-3
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import optuna

from polyp.checkpoint import load_checkpoint
from search.cli import USER_ERRORS, add_study_options, fail, study_request
from search.engine.session import Session, open_session
from search.results.checkpoint_export import (
    ONNX_FILE,
    ONNX_TOLERANCE,
    check_destination,
    export_trial,
    fastest_enough,
    pick_trial,
    record_export_latency,
    write_onnx,
)
from search.results.ensembles import ENSEMBLE_KINDS, best_winner_run, export_ensemble
from search.results.split_scores import describe


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Export the best trial (or trial N) of a study as a checkpoint folder.")
    add_study_options(parser, old_out=False, reads=True)
    parser.add_argument("--out", required=True, help="export folder (new, empty, or an earlier export: it is replaced)")
    parser.add_argument("--trial", type=int, help="trial number (default: the best complete trial)")
    parser.add_argument("--retrain", action="store_true", help="train the trial's config again if it kept no checkpoint")
    parser.add_argument("--epochs", type=int, help="with --retrain: epochs (default: the trial's)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="with --retrain: device (default: the trial's)")
    parser.add_argument("--onnx", action="store_true", help="also write model.onnx, checked with onnxruntime")
    parser.add_argument("--max-latency-ms", type=float,
                        help="export the best complete trial whose model runs within this many ms per frame "
                        "(its faster runtime, as the trial was timed)")
    parser.add_argument("--ensemble", nargs="?", const="winner", choices=ENSEMBLE_KINDS,
                        help="a refit study (NAME.refit): export several runs as one model that averages their "
                        "probabilities: 'winner' (the default) every run (seed, fold) of the winning configuration, "
                        "'top' the best run of each refit configuration")
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out = Path(args.out)
    try:
        request = study_request(args, "search.export")
        overrides = request.settings.training  # --epochs, --device: for --retrain
        session = open_session(request, create=False)
        check_destination(out, session.run_dir)
        if args.ensemble:
            ignored = [flag for flag, given in (("--trial", args.trial is not None), ("--retrain", args.retrain),
                                                ("--max-latency-ms", args.max_latency_ms is not None),
                                                ("--epochs", args.epochs is not None),
                                                ("--device", args.device is not None)) if given]
            if ignored:
                return fail(f"--ensemble exports refit runs as they are: {', '.join(ignored)} cannot go with it")
            return _ensemble_main(session, out, args.onnx, args.ensemble)
        if args.trial is not None and args.max_latency_ms is not None:
            return fail("--trial names the trial; --max-latency-ms picks one: give one of them")
        if args.max_latency_ms is not None and args.max_latency_ms <= 0:
            return fail(f"--max-latency-ms: {args.max_latency_ms:g} must be above 0")
        if args.trial is not None:
            trial = pick_trial(session.study, args.trial)
        elif args.max_latency_ms is not None:
            trial = fastest_enough(session.study, args.max_latency_ms)
        else:
            trial = best_winner_run(session) or pick_trial(session.study, None)
        model, cfg, facts = export_trial(session, trial, out, args.retrain, overrides)
        load_checkpoint(out)  # what polyp.predict will do: fail here, not there
        difference = write_onnx(model, out, cfg.image_size) if args.onnx else None
        latency = record_export_latency(model, out, cfg.image_size)
    except USER_ERRORS as error:
        return fail(str(error))
    val, test = facts["metrics"].get("val") or {}, facts["metrics"].get("test") or {}
    print(f"exported trial {trial.number} of study {session.spec.name} ({facts['source']}): "
          f"val mDice {val.get('mdice', float('nan')):.4f}, test mDice {test.get('mdice', float('nan')):.4f}")
    own = facts["metrics"].get("test_own_size") or {}
    if own:
        print(f"  test split at the images' own sizes, as polyp.evaluate scores it {describe(own)}")
    print(f"  {out}/: {', '.join(sorted(p.name for p in out.iterdir()))}")
    print(f"  latency on this machine: {latency.describe()}")
    if overrides and not facts["source"].startswith("retrained"):
        print(f"  note: {', '.join('--' + k for k in overrides)} ignored: trial {trial.number} kept its checkpoint")
    if difference is not None:
        print(f"  onnx check: max |onnxruntime - pytorch| = {difference:.3g} over the logits of a sample input "
              f"(2x3x{cfg.image_size}x{cfg.image_size})")
        if difference > ONNX_TOLERANCE:
            return fail(f"{out / ONNX_FILE}: differs from the PyTorch model by {difference:.3g} (> {ONNX_TOLERANCE})", 1)
    print(f"use it: python -m polyp.predict --model {out} --input IMAGE_OR_FOLDER --out predictions/")
    return 0


def _ensemble_main(session: Session, out: Path, onnx: bool, kind: str) -> int:
    """search.export --ensemble: writes and checks the ensemble, prints what it holds."""
    model, facts, runs = export_ensemble(session, out, kind)
    loaded, info = load_checkpoint(out)  # what polyp.predict will do: fail here, not there
    difference = write_onnx(loaded, out, info.image_size) if onnx else None
    latency = record_export_latency(loaded, out, info.image_size)
    what = (f"the winning configuration of study {session.spec.name} (search trial {facts['source_trial']})"
            if kind == "winner" else f"the best run of each configuration of study {session.spec.name} (search "
            f"trials {', '.join(str(source) for source in facts['source_trials'])})")
    print(f"exported {what} as an ensemble of {len(runs)} runs (trials {', '.join(str(t.number) for t in runs)}): "
          f"val mDice {facts['metrics']['val_mdice_mean']:.4f} on average over the runs")
    own = facts["metrics"].get("test_own_size") or {}
    if own:
        print(f"  the ensemble on the test split at the images' own sizes, as polyp.evaluate scores it {describe(own)}")
    print(f"  {out}/: {', '.join(sorted(p.name for p in out.iterdir()))}")
    print(f"  latency on this machine: {latency.describe()}")
    if difference is not None:
        print(f"  onnx check (one graph, every member): max |onnxruntime - pytorch| = {difference:.3g}")
        if difference > ONNX_TOLERANCE:
            return fail(f"{out / ONNX_FILE}: differs from the PyTorch model by {difference:.3g} (> {ONNX_TOLERANCE})", 1)
    print(f"use it: python -m polyp.predict --model {out} --input IMAGE_OR_FOLDER --out predictions/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
