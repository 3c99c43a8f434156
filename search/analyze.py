"""The report of a study: `python -m search.analyze --study demo` writes `<run folder>/<study>/report/`.

The report holds trials.csv, the loss curves of every trial (interactive HTML and PNG), Optuna's history,
importance, parallel-coordinate and slice plots, a prediction sheet per top trial on the same test images,
optionally a Grad-CAM sheet of the best trial, and an index.html linking all of it. It works on a study
that is still running or holds pruned and failed trials; with no complete trial it writes what there is,
says so, and exits with status 1.

Example:
    python -m search.analyze --study demo --out runs --top 3 --gradcam
"""

from __future__ import annotations

import argparse
import contextlib
import sys

import optuna
from optuna.trial import TrialState

from polyp.checkpoint import CheckpointError
from polyp.io import write_text
from search.ensemble_export import best_winner_run
from search.options import USER_ERRORS, add_study_options, fail
from search.record import refit_settings
from search.refit_table import refit_csv, refit_rows, refit_table
from search.report.page import ReportParts, index_html
from search.report.sheets import TrialFiles, gradcam_for, load_trial_model, prediction_sheets
from search.report.trials import loss_curves_html, loss_curves_png, write_optuna_plots, write_trials_csv
from search.session import Session, load_data, open_session
from search.storage import safe_url
from search.test_scores import describe, score_test_split
from search.trial_loop import top_trials

NO_COMPLETE_TRIAL = 1  # exit status when the study has no complete trial to report on


def no_complete_message(name: str, counts: dict[str, int]) -> str:
    """What to tell the user when there is nothing to rank."""
    words = {"PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running", "WAITING": "waiting"}
    summary = ", ".join(f"{counts.get(state, 0)} {word}" for state, word in words.items())
    return (f"study {name} has no finished (complete) trial yet ({summary}): there is no best trial, so no "
            f"prediction sheets or Optuna plots; trials.csv lists every trial with its fail reason")


def write_report(session: Session, top: int = 3, gradcam: bool = False) -> ReportParts:
    """Writes every file of the report into `<run folder>/<study>/report/` and returns what was written.

    Args:
        session: the opened study.
        top: trials with a prediction sheet (the best `top` complete ones).
        gradcam: also draw the Grad-CAM sheet of the best trial.
    """
    study, spec = session.study, session.spec
    folder = session.folder / "report"
    trials = study.get_trials(deepcopy=False)
    counts = {state.name: 0 for state in TrialState}
    for trial in trials:
        counts[trial.state.name] += 1
    best = top_trials(study, top)
    headline = best_winner_run(session) if best else None  # a refit study: the winner's best run comes first
    if headline is not None:
        best = [headline, *[t for t in best if t.number != headline.number]][:top]
    parts = ReportParts(spec.name, spec.description, counts, safe_url(session.storage_url), best)
    best_number = best[0].number if best else None
    title = f"study {spec.name}"
    parts.files["trials.csv"] = write_trials_csv(trials, folder / "trials.csv")
    if refit_settings(study) is not None:
        rows = refit_rows(study)
        parts.refit = refit_table(rows)
        write_text(folder / "refit.csv", refit_csv(rows))
        parts.files["refit.csv"] = folder / "refit.csv"
    parts.files["loss_curves.html"] = loss_curves_html(trials, folder / "loss_curves.html", title, best_number)
    parts.files["loss_curves.png"] = loss_curves_png(trials, folder / "loss_curves.png", title, best_number)
    if not best:
        parts.message = no_complete_message(spec.name, counts)
        return parts
    parts.optuna_plots = write_optuna_plots(study, folder)
    data = load_data(session)
    sample = data.test.subset(data.test.stems[: spec.run.sample_images])
    files = TrialFiles(session.run_dir, spec.name, session.artifacts)
    parts.sheets = prediction_sheets(files, best, sample, folder)
    if gradcam:
        parts.gradcam = gradcam_for(files, best[0], sample, folder)
    with contextlib.suppress(CheckpointError):  # a best trial without a checkpoint has its sheet's reason above
        model, info = load_trial_model(files, best[0], spec.base.image_size)
        parts.test_own_size = score_test_split(session, model, info.image_size, (info.mean, info.std))
    return parts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the report of a study: tables, loss curves, Optuna plots, "
                                                 "prediction sheets, index.html.")
    add_study_options(parser)
    parser.add_argument("--top", type=int, default=3, help="trials with a prediction sheet (default 3)")
    parser.add_argument("--gradcam", action="store_true", help="also draw Grad-CAM heat maps of the best trial")
    args = parser.parse_args(argv)
    if args.top < 1:
        return fail("--top must be at least 1")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        session = open_session(args, create=False)
        parts = write_report(session, args.top, args.gradcam)
        index = session.folder / "report" / "index.html"
        write_text(index, index_html(parts))
    except USER_ERRORS as error:
        return fail(str(error))
    for path in sorted(index.parent.iterdir()):
        if not path.name.startswith("."):
            print(f"  {path}")
    skipped = {**{k: v for k, v in parts.optuna_plots.items() if isinstance(v, str)},
               **{f"predictions of trial {k}": v for k, v in parts.sheets.items() if isinstance(v, str)}}
    if isinstance(parts.gradcam, str):
        skipped["gradcam"] = parts.gradcam
    for name, reason in skipped.items():
        print(f"  skipped {name}: {reason}")
    if parts.refit:
        print(parts.refit)
    own = parts.test_own_size
    if own:
        which = " (the refit winner's best run)" if parts.refit else ""
        print(f"trial {parts.top[0].number}{which} on the test split at the images' own sizes {describe(own)}")
    print(f"report: {index}")
    if parts.message:
        print(f"error: {parts.message}", file=sys.stderr)
        return NO_COMPLETE_TRIAL
    return 0


if __name__ == "__main__":
    sys.exit(main())
