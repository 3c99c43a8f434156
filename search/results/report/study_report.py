"""The report of a study: trials.csv, loss curves, Optuna's plots, prediction sheets of the top trials, a Grad-CAM
sheet, the refit table of a refit study, and the best trial's test-split scores at the images' own sizes."""

from __future__ import annotations

import contextlib

from optuna.trial import TrialState

from polyp.checkpoint import CheckpointError
from polyp.io import write_text
from search.engine.record import TrialRecord, refit_settings, set_scores
from search.engine.session import Session, load_data
from search.engine.storage import safe_url
from search.engine.trial_loop import top_trials
from search.results.ensembles import best_winner_run
from search.results.refit_table import refit_csv, refit_rows, refit_table
from search.results.report.page import ReportParts
from search.results.report.sheets import TrialFiles, gradcam_for, load_trial_model, prediction_sheets
from search.results.report.speed import speed_front_html, speed_front_png, speed_points
from search.results.report.trials import (
    loss_curves_html,
    loss_curves_png,
    write_optuna_plots,
    write_trials_csv,
)
from search.results.split_scores import score_test_split

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
    if points := speed_points(trials):  # the trials were timed ([run].latency)
        label = "objective" if any(set_scores(TrialRecord.of(t).val) for t in best) else "val mDice"
        limit = spec.run.max_latency_ms
        parts.files["speed_front.html"] = speed_front_html(points, folder / "speed_front.html", title, label, limit)
        parts.files["speed_front.png"] = speed_front_png(points, folder / "speed_front.png", title, label, limit)
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
