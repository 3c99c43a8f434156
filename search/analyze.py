"""The report of a study: `python -m search.analyze --study demo` writes `<run folder>/<study>/report/`.

The report holds trials.csv, the loss curves of every trial (interactive HTML and PNG), Optuna's history,
importance, parallel-coordinate and slice plots, a prediction sheet per top trial on the same test images,
optionally a Grad-CAM sheet of the best trial, and an index.html linking all of it. It works on a study
that is still running or holds pruned and failed trials; with no complete trial it writes what there is,
says so, and exits with status 1. The run folder is the study's own unless --run-dir names one.

Example:
    python -m search.analyze --study demo --top 3 --gradcam
"""

from __future__ import annotations

import argparse
import sys

import optuna

from polyp.io import write_text
from search.cli import USER_ERRORS, add_study_options, fail, study_request
from search.engine.session import open_session
from search.results.report.page import index_html
from search.results.report.study_report import NO_COMPLETE_TRIAL, write_report
from search.results.split_scores import describe


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the report of a study: tables, loss curves, Optuna plots, "
                                                 "prediction sheets, index.html.")
    add_study_options(parser, reads=True)
    parser.add_argument("--top", type=int, default=3, help="trials with a prediction sheet (default 3)")
    parser.add_argument("--gradcam", action="store_true", help="also draw Grad-CAM heat maps of the best trial")
    args = parser.parse_args(argv)
    if args.top < 1:
        return fail("--top must be at least 1")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        session = open_session(study_request(args, "search.analyze"), create=False)
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
