"""A refit study's results per configuration: mean ± standard deviation over its seeds and folds, and how the
search's ranking compares with the refit's (Spearman's rho). `search.refit` prints it, `search.analyze` reports
it, `search.export` picks the winner from it.
"""

from __future__ import annotations

import csv
import io
import statistics
import warnings
from dataclasses import dataclass, field

import optuna
from optuna.trial import FrozenTrial, TrialState
from scipy.stats import spearmanr

from search.engine.record import TrialRecord, format_number, refit_settings, set_scores


@dataclass(frozen=True)
class RefitRow:
    """One configuration of the search, trained again."""

    source: int  # the search trial whose configuration it is
    search_value: float | None  # that trial's validation mDice in the search
    settings: str  # its key settings in one line
    runs: int  # complete refit runs
    val: list[float]  # each complete run's best validation mDice
    test: list[float]  # each complete run's test mDice (at the training size, the trainer's measure)
    trials: list[int]  # the refit study's trial numbers of the complete runs, in the same order
    planned: int = 0  # runs the refit settings ask for (seeds x folds); 0 = not known
    sets: dict[str, list[float]] = field(default_factory=dict)  # each scored set's validation mDice per run

    def set_cell(self, name: str) -> str:
        """`name`'s validation mDice as mean ± sd over the runs."""
        values = self.sets.get(name, [])
        return _mean_std(statistics.mean(values) if values else None,
                         statistics.stdev(values) if len(values) > 1 else (0.0 if values else None))

    @property
    def complete(self) -> bool:
        """Whether every planned run has finished (a failed or missing run leaves the configuration incomplete)."""
        return self.runs >= self.planned

    @property
    def val_mean(self) -> float | None:
        return statistics.mean(self.val) if self.val else None

    @property
    def val_std(self) -> float | None:
        return statistics.stdev(self.val) if len(self.val) > 1 else (0.0 if self.val else None)

    @property
    def test_mean(self) -> float | None:
        return statistics.mean(self.test) if self.test else None

    @property
    def test_std(self) -> float | None:
        return statistics.stdev(self.test) if len(self.test) > 1 else (0.0 if self.test else None)


def refit_rows(refit: optuna.Study) -> list[RefitRow]:
    """A row per source configuration of the refit study, in the order of the search's value (best first)."""
    settings = refit_settings(refit) or {}
    planned = settings.get("seeds", 0) * max(settings.get("folds", 0), 1)
    groups: dict[int, list[FrozenTrial]] = {}
    for trial in refit.get_trials(deepcopy=False):
        source = TrialRecord.of(trial).refit_source
        if source is not None:
            groups.setdefault(source, []).append(trial)
    rows = []
    for source, trials in groups.items():
        records = [TrialRecord.of(t) for t in trials]
        complete = [r for r in records if r.state == TrialState.COMPLETE]
        settings = TrialRecord.of(trials[0]).refit_values or {}
        described = TrialRecord(0, TrialState.COMPLETE, None, {}, None, {}, config=settings).describe()
        names = sorted({key[: -len("_mdice")] for r in complete for key in set_scores(r.val) if key.endswith("_mdice")})
        sets = {name: [r.val[f"{name}_mdice"] for r in complete if f"{name}_mdice" in r.val] for name in names}
        rows.append(RefitRow(source, records[0].refit_source_value, described, len(complete),
                             [r.value for r in complete],
                             [r.test["mdice"] for r in complete if "mdice" in r.test],
                             [r.number for r in complete], planned, sets))
    return sorted(rows, key=lambda row: -(row.search_value or 0.0))


def set_names(rows: list[RefitRow]) -> list[str]:
    """The scored sets of the rows (empty when the search scored its in-domain validation split only)."""
    return sorted({name for row in rows for name in row.sets})


def value_name(rows: list[RefitRow]) -> str:
    """What the runs were ranked by: validation mDice, or the objective over several sets."""
    return "validation objective" if set_names(rows) else "validation mDice"


def rank_correlation(rows: list[RefitRow]) -> float | None:
    """Spearman's rho between the configurations' search values and their mean refit validation mDice."""
    return spearman([(row.search_value, row.val_mean) for row in rows])


def spearman(pairs: list[tuple[float | None, float | None]]) -> float | None:
    """Spearman's rho over the pairs with both values; None with fewer than 2 or a constant side."""
    pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
    if len(pairs) < 2:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a constant side: rho is undefined (NaN), said below
        rho = spearmanr([p[0] for p in pairs], [p[1] for p in pairs]).statistic
    return None if rho != rho else float(rho)  # NaN when one side is constant


def winner(rows: list[RefitRow]) -> RefitRow | None:
    """The configuration with the best mean validation value (mDice, or the study's objective over several sets;
    never chosen by test), among those with all their
    planned runs when any has them: a mean over the seeds that happened to finish favours unstable ones."""
    scored = [row for row in rows if row.val_mean is not None]
    candidates = [row for row in scored if row.complete] or scored
    return max(candidates, key=lambda row: row.val_mean) if candidates else None


def _mean_std(mean: float | None, std: float | None) -> str:
    return "" if mean is None else f"{mean:.4f} ± {std:.4f}"


def refit_table(rows: list[RefitRow]) -> str:
    """The printed table: source trial, search value, runs, refit val and test mDice (mean ± std), settings;
    then Spearman's rho between the two rankings and the winner."""
    best = winner(rows)
    names = set_names(rows)
    label = "refit val objective" if names else "refit val mDice"
    sets = "".join(f"  {'val ' + name:>17}" for name in names)
    lines = [f"{'trial':>5}  {'search val':>10}  {'runs':>4}  {label:>19}{sets}  {'refit test mDice':>17}  settings"]
    for row in rows:
        mark = " <- winner" if row is best else ""
        cells = "".join(f"  {row.set_cell(name):>17}" for name in names)
        lines.append(f"{row.source:>5}  {format_number(row.search_value):>10}  {row.runs:>4}  "
                     f"{_mean_std(row.val_mean, row.val_std):>19}{cells}  {_mean_std(row.test_mean, row.test_std):>17}  "
                     f"{row.settings}{mark}")
    incomplete = [row for row in rows if not row.complete]
    if incomplete:
        lines.append("not all runs finished (failed, running or not started): " + ", ".join(
            f"trial {row.source}'s configuration {row.runs} of {row.planned}" for row in incomplete)
            + ("; the winner is chosen among the configurations with all their runs"
               if any(row.complete and row.val for row in rows) else ""))
    rho = rank_correlation(rows)
    lines.append(f"Spearman's rho between the search's ranking and the refit's (mean {value_name(rows)}): "
                 f"{'n/a (fewer than 2 configurations with complete runs)' if rho is None else f'{rho:.2f}'}")
    return "\n".join(lines)


def refit_csv(rows: list[RefitRow]) -> str:
    """The table as CSV (one row per configuration)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    names = set_names(rows)
    writer.writerow(["source_trial", "search_val_mdice", "runs", "refit_val_mdice_mean", "refit_val_mdice_std",
                     *(f"refit_val_{name}_mdice_{stat}" for name in names for stat in ("mean", "std")),
                     "refit_test_mdice_mean", "refit_test_mdice_std", "refit_trials", "settings"])
    for row in rows:
        per_set = []
        for name in names:
            values = row.sets.get(name, [])
            per_set += [format_number(statistics.mean(values) if values else None),
                        format_number(statistics.stdev(values) if len(values) > 1 else (0.0 if values else None))]
        writer.writerow([row.source, format_number(row.search_value), row.runs, format_number(row.val_mean),
                         format_number(row.val_std), *per_set, format_number(row.test_mean), format_number(row.test_std),
                         " ".join(map(str, row.trials)), row.settings])
    return buffer.getvalue()


def winner_line(rows: list[RefitRow]) -> str | None:
    """The winner and how to export it (None before any configuration finished its runs)."""
    best = winner(rows)
    if best is None:
        return None
    runs = f"{best.runs} run{'s' if best.runs != 1 else ''}"
    return (f"winner (best mean {value_name(rows)}, {runs}): trial {best.source}'s configuration; "
            f"search.export exports it" + (f", and with --ensemble its {runs} as one model" if best.runs > 1 else ""))
