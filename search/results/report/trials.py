"""The parts of a study report that need no model: the trial table, the loss curves of every trial, and
Optuna's own plots. `search.analyze` puts them together with the prediction sheets and `index.html`."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import optuna  # noqa: E402
import pandas  # noqa: E402
import plotly.graph_objects as go  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from optuna.trial import FrozenTrial, TrialState  # noqa: E402
from plotly.subplots import make_subplots  # noqa: E402

from polyp.io import atomic_path  # noqa: E402
from search.engine.record import TrialRecord, set_scores, trial_value  # noqa: E402

CURVES = (("train_loss", "train loss"), ("val_loss", "validation loss"), ("val_mdice", "validation mDice (per-image mean)"))
LINE_STYLES = {"COMPLETE": ("solid", "-"), "PRUNED": ("dot", ":"), "RUNNING": ("dashdot", "-."), "FAIL": ("dash", "--")}
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


def trial_row(trial: FrozenTrial) -> dict:
    """One row of trials.csv: number, state, value, params, epochs, metrics, parameter count, latency per frame
    (PyTorch, ONNX Runtime), seconds."""
    record = TrialRecord.of(trial)
    val, test = record.val, record.test
    return {
        "number": record.number, "state": record.state.name, "value": record.value,
        **{f"param_{name}": value for name, value in record.params.items()},
        "epochs": record.epochs, "best_epoch": record.best_epoch,
        "val_mdice": val.get("mdice"), "val_miou": val.get("miou"),
        **{f"val_{key}": val[key] for key in set_scores(val)},
        **({"val_objective": val.get("objective")} if set_scores(val) else {}),
        "test_mdice": test.get("mdice"), "test_miou": test.get("miou"),
        "parameters": record.parameters, "latency_torch_ms": record.latency_ms("torch"),
        "latency_onnx_ms": record.latency_ms("onnx"), "seconds": record.seconds, "fail_reason": record.fail_reason,
    }


def trials_table(trials: list[FrozenTrial]) -> pandas.DataFrame:
    """One row per trial (every state): number, state, value, the params (union over all trials, sorted),
    then epochs, metrics, parameter count, seconds and fail reason; missing values are None."""
    table = pandas.DataFrame([trial_row(t) for t in trials], dtype=object)
    if table.empty:
        return pandas.DataFrame(columns=["number", "state", "value"])
    params = sorted(c for c in table.columns if c.startswith("param_"))
    fixed = [c for c in table.columns if not c.startswith("param_")]
    return table[fixed[:3] + params + fixed[3:]].astype(object).where(table.notna(), None)


def write_trials_csv(trials: list[FrozenTrial], path: Path) -> Path:
    """Writes `trials_table` as CSV (missing values as empty cells)."""
    with atomic_path(path) as temporary:
        trials_table(trials).to_csv(temporary, index=False)
    return path


def curves(trial: FrozenTrial) -> dict[str, tuple[list[int], list[float]]]:
    """Per-epoch series of a trial: its stored history, or the reported val mDice while it still runs."""
    record = TrialRecord.of(trial)
    history = record.history
    if history:
        return {key: ([h["epoch"] for h in history if key in h], [h[key] for h in history if key in h]) for key, _ in CURVES}
    reported = record.intermediate  # Optuna's, or a two-objective trial's own record
    steps = sorted(reported)
    return {"val_mdice": (steps, [reported[s] for s in steps])} if steps else {}


def _label(trial: FrozenTrial, best: int | None) -> str:
    mark = ", best" if trial.number == best else ""
    return f"trial {trial.number} ({trial.state.name.lower()}{mark})"


def loss_curves_html(trials: list[FrozenTrial], path: Path, title: str, best: int | None = None) -> Path:
    """All trials' train loss, val loss and val mDice per epoch in one interactive plotly page.

    Complete trials are solid lines, pruned ones dotted, running ones dash-dotted, failed ones dashed;
    clicking a legend entry hides a trial in all three panels.
    """
    figure = make_subplots(rows=1, cols=3, subplot_titles=[name for _, name in CURVES], horizontal_spacing=0.06)
    for index, trial in enumerate(t for t in trials if curves(t)):
        series = curves(trial)
        dash = LINE_STYLES.get(trial.state.name, ("solid", "-"))[0]
        colour = PALETTE[index % len(PALETTE)]
        shown = False
        for column, (key, name) in enumerate(CURVES, start=1):
            if key not in series:
                continue
            epochs, values = series[key]
            figure.add_trace(go.Scatter(
                x=epochs, y=values, mode="lines+markers", name=_label(trial, best), legendgroup=str(trial.number),
                showlegend=not shown, line={"color": colour, "dash": dash, "width": 3 if trial.number == best else 1.5},
                opacity=1.0 if trial.state == TrialState.COMPLETE else 0.6,
                hovertemplate=f"trial {trial.number} ({trial.state.name.lower()})<br>epoch %{{x}}<br>{name} %{{y:.4f}}<extra></extra>",
            ), row=1, col=column)
            shown = True
    figure.update_xaxes(title_text="epoch")
    figure.update_yaxes(range=[0, 1], row=1, col=3)
    figure.update_layout(title=f"{title}: solid = complete, dotted = pruned, dashed = failed", height=480,
                         legend={"font": {"size": 10}}, template="plotly_white")
    return write_figure_html(figure, path)


def loss_curves_png(trials: list[FrozenTrial], path: Path, title: str, best: int | None = None) -> Path:
    """The same three panels as a PNG (matplotlib); pruned trials dotted and faded."""
    figure, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    for index, trial in enumerate(t for t in trials if curves(t)):
        series = curves(trial)
        style = LINE_STYLES.get(trial.state.name, ("solid", "-"))[1]
        complete = trial.state == TrialState.COMPLETE
        for axis, (key, _) in zip(axes, CURVES, strict=True):
            if key in series:
                axis.plot(*series[key], style, marker="o", markersize=3, color=PALETTE[index % len(PALETTE)],
                          linewidth=2.5 if trial.number == best else 1.2, alpha=1.0 if complete else 0.5,
                          label=_label(trial, best))
    for axis, (_, name) in zip(axes, CURVES, strict=True):
        axis.set_title(name, fontsize=10)
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
    axes[2].set_ylim(0, 1)
    handles, labels = axes[2].get_legend_handles_labels()
    if handles:
        figure.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    figure.suptitle(f"{title}: solid = complete, dotted = pruned, dashed = failed", fontsize=11)
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=90, bbox_inches="tight", format="png")
    plt.close(figure)
    return path


def write_figure_html(figure: go.Figure, path: Path) -> Path:
    """Writes a plotly figure as HTML that loads plotly.min.js from its own folder (works offline)."""
    with atomic_path(path) as temporary:
        figure.write_html(str(temporary), include_plotlyjs="directory", full_html=True)
    return path


OPTUNA_PLOTS: dict[str, tuple[str, Callable[[optuna.Study], go.Figure]]] = {
    "optimization_history": ("Optimization history", optuna.visualization.plot_optimization_history),
    "param_importances": ("Parameter importances", optuna.visualization.plot_param_importances),
    "parallel_coordinate": ("Parallel coordinates", optuna.visualization.plot_parallel_coordinate),
    "slice": ("Slice plots", optuna.visualization.plot_slice),
    "pareto_front": ("Pareto front of mDice and latency (Optuna's)", optuna.visualization.plot_pareto_front),
}
MULTI_OBJECTIVE_ONLY = ("pareto_front",)  # drawn for a study of [run].objectives = ["mdice", "latency_ms"] only


def _why_not(name: str, complete: list[FrozenTrial]) -> str | None:
    """Why Optuna's plot `name` cannot say anything about these complete trials, or None if it can."""
    if not complete:
        return "no complete trial yet"
    if name in ("param_importances", "parallel_coordinate", "slice") and not any(t.params for t in complete):
        return "the complete trials have no searched parameters"
    if name == "param_importances":
        if len(complete) < 2:
            return f"needs at least 2 complete trials, the study has {len(complete)}"
        varying = {key for t in complete for key in t.params if len({str(c.params.get(key)) for c in complete}) > 1}
        if not varying:
            return "no parameter takes more than one value among the complete trials"
    return None


def write_optuna_plots(study: optuna.Study, folder: Path) -> dict[str, Path | str]:
    """Writes Optuna's history, importance, parallel-coordinate and slice plots as HTML.

    Returns:
        plot name -> the HTML written, or the reason it was skipped.
    """
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    multi = len(study.directions) > 1
    written: dict[str, Path | str] = {}
    for name, (_, plot) in OPTUNA_PLOTS.items():
        if name in MULTI_OBJECTIVE_ONLY and not multi:
            continue
        reason = _why_not(name, complete)
        if reason is None:
            # Two objectives: the pareto front draws both, the other plots the first (validation mDice)
            options = {} if not multi or name in MULTI_OBJECTIVE_ONLY else {"target": trial_value,
                                                                              "target_name": "validation score"}
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    written[name] = write_figure_html(plot(study, **options), folder / f"{name}.html")
                continue
            except (ValueError, RuntimeError, ZeroDivisionError) as error:
                reason = f"Optuna could not draw it: {error}"
        written[name] = reason
    return written
