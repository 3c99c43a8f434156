"""`search.export --ensemble`: a refit study's winning configuration, all its runs (seeds, folds) as one model.

The winner is the configuration with the best mean validation mDice (`search.refit_table.winner`); each of
its complete runs becomes a member of an ensemble folder (`polyp.checkpoint.save_ensemble`), which averages their probabilities. The
folder's `training.json` lists the members with their trial, seed, fold and metrics, and holds the ensemble's
own test-split scores (every measure at the images' own sizes, as `polyp.evaluate` scores them).
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timezone
from pathlib import Path

from optuna.trial import FrozenTrial
from torch import nn

from polyp.checkpoint import load_checkpoint, read_info, save_ensemble
from polyp.models.ensemble import Ensemble
from search.artifacts import checkpoint_folder
from search.record import TrialRecord, refit_settings
from search.refit_table import refit_rows, winner
from search.session import Session
from search.storage import safe_url
from search.studies import StudyError
from search.test_scores import score_test_split


def winner_runs(session: Session) -> list[FrozenTrial]:
    """The complete runs of a refit study's winning configuration (StudyError for any other study)."""
    if refit_settings(session.study) is None:
        raise StudyError(f"--ensemble: study {session.spec.name} is not a refit study; run search.refit and "
                         f"export --study {session.spec.name}.refit")
    best = winner(refit_rows(session.study))
    if best is None:
        raise StudyError(f"study {session.spec.name} has no complete refit run yet")
    trials = {t.number: t for t in session.study.get_trials(deepcopy=False)}
    return [trials[number] for number in best.trials]


def best_winner_run(session: Session) -> FrozenTrial | None:
    """For a refit study, the winning configuration's run with the best validation mDice; None otherwise."""
    if refit_settings(session.study) is None:
        return None
    runs = winner_runs(session)
    return max(runs, key=lambda t: t.value)


def export_ensemble(session: Session, out: Path) -> tuple[nn.Module, dict, list[FrozenTrial]]:
    """Writes the winner's runs into `out` as one ensemble; returns the model, its facts and the runs."""
    runs = winner_runs(session)
    if len(runs) < 2:
        raise StudyError(f"the winning configuration of {session.spec.name} has {len(runs)} complete run; an "
                         f"ensemble needs 2 or more (refit with --seeds 2+ or --folds 2+)")
    with contextlib.ExitStack() as stack:
        folders = []
        for trial in runs:
            folder = stack.enter_context(checkpoint_folder(session.artifacts, session.run_dir, session.spec.name, trial))
            if folder is None:
                raise StudyError(f"run {trial.number} of {session.spec.name} kept no checkpoint")
            folders.append(Path(folder))
        info = read_info(folders[0])
        model = Ensemble([load_checkpoint(folder)[0] for folder in folders]).eval()
        records = [TrialRecord.of(trial) for trial in runs]
        members = [{"trial": r.number, "source_trial": r.refit_source, "seed": r.refit_seed, "fold": r.refit_fold,
                    "metrics": {"val": r.val, "test": r.test}} for r in records]
        scores = score_test_split(session, model, info.image_size, (info.mean, info.std))
        values = [r.value for r in records]
        facts = {"metrics": {"val_mdice_of_members": values, "val_mdice_mean": sum(values) / len(values),
                             "test_own_size": scores},
                 "study": session.spec.name, "source_trial": records[0].refit_source, "storage": safe_url(session.storage_url),
                 "source": f"search.export --ensemble: the {len(runs)} runs of the winning configuration",
                 "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        save_ensemble(folders, out, members, facts)
    return model, facts, runs
