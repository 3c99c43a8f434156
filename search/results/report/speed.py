"""The report's accuracy-speed picture: each complete trial's value against its model's latency per frame, with
the Pareto front (the trials no other trial beats on both), as interactive plotly HTML and as a PNG."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import plotly.graph_objects as go  # noqa: E402
from optuna.trial import FrozenTrial, TrialState  # noqa: E402

from polyp.io import atomic_path  # noqa: E402
from search.engine.record import TrialRecord  # noqa: E402
from search.results.report.trials import write_figure_html  # noqa: E402


@dataclass(frozen=True)
class SpeedPoint:
    """One complete trial: its value, its model's faster runtime and that runtime's milliseconds per frame."""

    number: int
    value: float
    ms: float
    runtime: str
    settings: str


def speed_points(trials: list[FrozenTrial]) -> list[SpeedPoint]:
    """The complete trials that were timed, with the faster of their two runtimes (what `polyp.predict
    --runtime auto` would run)."""
    points = []
    for trial in trials:
        record = TrialRecord.of(trial)
        if trial.state != TrialState.COMPLETE or record.value is None or not record.latency:
            continue
        times = {name: ms for name in ("torch", "onnx") if (ms := record.latency_ms(name)) is not None}
        runtime = min(times, key=times.get)
        points.append(SpeedPoint(record.number, record.value, times[runtime], runtime, record.describe()))
    return points


def pareto_front(points: list[SpeedPoint]) -> list[SpeedPoint]:
    """The points no other point beats on both (higher value and lower latency, one strictly), fastest first."""
    front, best = [], float("-inf")
    for point in sorted(points, key=lambda p: (p.ms, -p.value)):
        if point.value > best:
            front.append(point)
            best = point.value
    return front


def _label(limit: float) -> str:
    return f"max_latency_ms {limit:g}"


def speed_front_html(points: list[SpeedPoint], path: Path, title: str, label: str, limit: float = 0) -> Path:
    """Every point, the front as a line, the latency limit (if any) as a vertical line; hover names the trial."""
    front = pareto_front(points)
    figure = go.Figure()
    hover = [f"trial {p.number}<br>{label} {p.value:.4f}<br>{p.ms:.1f} ms ({p.runtime})<br>{p.settings}" for p in points]
    figure.add_trace(go.Scatter(x=[p.ms for p in points], y=[p.value for p in points], mode="markers", name="trials",
                                text=hover, hoverinfo="text", marker={"size": 9, "color": "#1f77b4", "opacity": 0.7}))
    figure.add_trace(go.Scatter(x=[p.ms for p in front], y=[p.value for p in front], mode="lines+markers",
                                name="Pareto front", line={"color": "#d62728", "shape": "hv"},
                                marker={"size": 11, "color": "#d62728"},
                                text=[f"trial {p.number}" for p in front], hoverinfo="text"))
    if limit:
        figure.add_vline(x=limit, line_dash="dash", line_color="#7f7f7f", annotation_text=_label(limit))
    figure.update_layout(title=f"{title}: {label} against milliseconds per frame (batch 1, the faster runtime)",
                         xaxis_title="ms per frame", yaxis_title=label, template="plotly_white", height=480)
    return write_figure_html(figure, path)


def speed_front_png(points: list[SpeedPoint], path: Path, title: str, label: str, limit: float = 0) -> Path:
    """The same picture as a PNG (matplotlib), the front's trials numbered."""
    front = pareto_front(points)
    figure, axis = plt.subplots(figsize=(7.5, 4.5))
    axis.scatter([p.ms for p in points], [p.value for p in points], s=30, alpha=0.7, label="trials")
    axis.step([p.ms for p in front], [p.value for p in front], where="post", color="#d62728", marker="o",
              label="Pareto front")
    for point in front:
        axis.annotate(str(point.number), (point.ms, point.value), textcoords="offset points", xytext=(4, 4), fontsize=8)
    if limit:
        axis.axvline(limit, linestyle="--", color="#7f7f7f", label=_label(limit))
    axis.set_xlabel("ms per frame (batch 1, the faster runtime)")
    axis.set_ylabel(label)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    axis.set_title(f"{title}: {label} against latency", fontsize=10)
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=90, format="png")
    plt.close(figure)
    return path
