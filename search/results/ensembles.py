"""`search.export --ensemble`: a refit study's runs as one model that averages their probabilities.

`--ensemble winner` (the default): the configuration with the best mean validation value (mDice or the objective)
(`search.results.refit_table.winner`), every complete run of it (its seeds, folds). `--ensemble top`: every refit
configuration, each by its run with the best validation mDice (different configurations, one model each).
The members go into an ensemble folder (`polyp.checkpoint.save_ensemble`); its `training.json` lists them
with their trial, seed, fold and metrics, and holds the ensemble's own test-split scores (every measure at the
images' own sizes, as `polyp.evaluate` scores them). Members are chosen by validation only.
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timezone
from pathlib import Path

from optuna.trial import FrozenTrial
from torch import nn

from polyp.checkpoint import CheckpointError, load_checkpoint, same_input, save_ensemble
from polyp.models.ensemble import Ensemble
from search.engine.artifacts import checkpoint_folder
from search.engine.record import TrialRecord, refit_settings, trial_value
from search.engine.session import Session
from search.engine.storage import safe_url
from search.results.refit_table import RefitRow, refit_rows, winner
from search.results.split_scores import score_test_split
from search.study.definition import StudyError

ENSEMBLE_KINDS = ("winner", "top")


def _complete_rows(session: Session) -> tuple[list[RefitRow], dict[int, FrozenTrial]]:
    """The refit study's configurations with complete runs, and its trials by number (StudyError otherwise)."""
    if refit_settings(session.study) is None:
        raise StudyError(f"--ensemble: study {session.spec.name} is not a refit study; run search.refit and "
                         f"export --study {session.spec.name}.refit")
    rows = [row for row in refit_rows(session.study) if row.trials]
    if not rows:
        raise StudyError(f"study {session.spec.name} has no complete refit run yet")
    return rows, {t.number: t for t in session.study.get_trials(deepcopy=False)}


def winner_runs(session: Session) -> list[FrozenTrial]:
    """The complete runs of a refit study's winning configuration (StudyError for any other study)."""
    rows, trials = _complete_rows(session)
    return [trials[number] for number in winner(rows).trials]


def top_runs(session: Session) -> list[FrozenTrial]:
    """Each refit configuration's best run by validation mDice, the best configuration (mean validation) first."""
    rows, trials = _complete_rows(session)
    rows = sorted(rows, key=lambda row: -row.val_mean)
    return [max((trials[number] for number in row.trials), key=trial_value) for row in rows]


def best_winner_run(session: Session) -> FrozenTrial | None:
    """For a refit study, the winning configuration's run with the best validation mDice; None otherwise."""
    if refit_settings(session.study) is None:
        return None
    runs = winner_runs(session)
    return max(runs, key=trial_value)


def export_ensemble(session: Session, out: Path, kind: str = "winner") -> tuple[nn.Module, dict, list[FrozenTrial]]:
    """Writes the runs of `kind` (ENSEMBLE_KINDS) into `out` as one ensemble; returns the model, its facts and
    the runs."""
    runs = winner_runs(session) if kind == "winner" else top_runs(session)
    if len(runs) < 2 and kind == "winner":
        raise StudyError(f"the winning configuration of {session.spec.name} has {len(runs)} complete run; an "
                         f"ensemble needs 2 or more (refit with --seeds 2+ or --folds 2+, or use --ensemble top)")
    if len(runs) < 2:
        raise StudyError(f"{session.spec.name} has {len(runs)} configuration with complete runs; --ensemble top "
                         f"needs 2 or more (refit with --top 2+)")
    with contextlib.ExitStack() as stack:
        folders = []
        for trial in runs:
            folder = stack.enter_context(checkpoint_folder(session.artifacts, session.run_dir, session.spec.name, trial))
            if folder is None:
                raise StudyError(f"run {trial.number} of {session.spec.name} kept no checkpoint")
            folders.append(Path(folder))
        try:  # before any member is loaded or scored
            info = same_input(folders, [f"run {trial.number}" for trial in runs])[0]
        except CheckpointError as error:
            raise StudyError(f"{session.spec.name}: {error}; export --ensemble winner (one configuration) or a "
                             f"single run instead") from None
        model = Ensemble([load_checkpoint(folder)[0] for folder in folders]).eval()
        records = [TrialRecord.of(trial) for trial in runs]
        members = [{"trial": r.number, "source_trial": r.refit_source, "seed": r.refit_seed, "fold": r.refit_fold,
                    "metrics": {"val": r.val, "test": r.test}} for r in records]
        scores = score_test_split(session, model, info.image_size, (info.mean, info.std))
        values = [r.value for r in records]
        facts = {"metrics": {"val_mdice_of_members": values, "val_mdice_mean": sum(values) / len(values),
                             "test_own_size": scores},
                 "study": session.spec.name, "source_trial": records[0].refit_source,
                 "source_trials": [r.refit_source for r in records], "storage": safe_url(session.storage_url),
                 "source": (f"search.export --ensemble winner: the {len(runs)} runs of the winning configuration"
                            if kind == "winner" else f"search.export --ensemble top: the best run of each of the "
                            f"{len(runs)} refit configurations"),
                 "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        save_ensemble(folders, out, members, facts)
    return model, facts, runs
