"""`index.html` of a study report: the state of the study, its top trials, and links to every file."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

from optuna.trial import FrozenTrial

from polyp.evaluate.measures import MEASURES
from polyp.evaluate.scoring import COLUMNS
from search.engine.record import TrialRecord, format_number, set_scores
from search.results.report.trials import OPTUNA_PLOTS

STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
td.text,th.text{text-align:left}.warning{background:#fff3cd;border:1px solid #e0c060;padding:.8em}
.skipped{color:#777}img{max-width:100%;border:1px solid #ddd}figure{display:inline-block;margin:.5em;vertical-align:top}"""


@dataclass
class ReportParts:
    """What `search.analyze` wrote (paths) or skipped (reasons), for `index.html` to link or explain."""

    study: str
    description: str
    counts: dict[str, int]
    storage: str
    top: list[FrozenTrial]
    message: str = ""  # shown first, e.g. "no complete trial yet"
    files: dict[str, Path] = field(default_factory=dict)  # trials.csv, loss_curves.html, loss_curves.png
    optuna_plots: dict[str, Path | str] = field(default_factory=dict)
    sheets: dict[int, Path | str] = field(default_factory=dict)
    gradcam: Path | str | None = None
    test_own_size: dict = field(default_factory=dict)  # the best trial on the test split, as polyp.evaluate scores it
    refit: str = ""  # a refit study's table per configuration (search.results.refit_table), as printed


def _link(path: Path, text: str) -> str:
    return f'<a href="{html.escape(path.name)}">{html.escape(text)}</a>'


def top_table(trials: list[FrozenTrial]) -> str:
    """The top trials as an HTML table: metrics, size, time, settings and a link to the trial's folder."""
    records = [TrialRecord.of(trial) for trial in trials]
    names = sorted({key for record in records for key in set_scores(record.val) if key.endswith("_mdice")})
    head = ("rank", "trial", "objective" if names else "val mDice", *(f"val {key[: -len('_mdice')]}" for key in names),
            "test mDice", "test mIoU", "epochs", "params (M)", "ms/frame PyTorch", "ms/frame ONNX", "seconds")
    rows = ["<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + '<th class="text">settings</th>'
            '<th class="text">outputs</th></tr>']
    for rank, record in enumerate(records, start=1):
        cells = (rank, record.number, format_number(record.value, missing="–"),
                 *(format_number(record.val.get(key), missing="–") for key in names),
                 format_number(record.test.get("mdice"), missing="–"), format_number(record.test.get("miou"), missing="–"),
                 "–" if record.epochs_run is None else record.epochs_run,
                 format_number((record.parameters or 0) / 1e6, 2), format_number(record.latency_ms("torch"), 1, missing="–"),
                 format_number(record.latency_ms("onnx"), 1, missing="–"), format_number(record.seconds, 1, missing="–"))
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + f'<td class="text">{html.escape(record.describe())}</td>'
                    f'<td class="text"><a href="../trial-{record.number}/">trial-{record.number}/</a></td></tr>')
    return "\n".join(rows) + "</table>"


def own_size_table(scores: dict) -> str:
    """The best trial's test-split measures at the images' own sizes, as one HTML table row."""
    head = "".join(f"<th>{label}</th>" for label in ("images", *(COLUMNS[key] for key in MEASURES)))
    cells = "".join(f"<td>{format_number(scores[key], 2 if key == 'hd95' else 4, missing='–')}</td>" for key in MEASURES)
    return f"<table><tr>{head}</tr><tr><td>{scores['images']}</td>{cells}</tr></table>"


def _figure(path: Path | str, caption: str) -> str:
    if isinstance(path, Path):
        return f'<figure><a href="{html.escape(path.name)}"><img src="{html.escape(path.name)}" alt="{html.escape(caption)}">' \
               f"</a><figcaption>{html.escape(caption)}</figcaption></figure>"
    return f'<p class="skipped">{html.escape(caption)}: not drawn ({html.escape(path)})</p>'


def index_html(parts: ReportParts) -> str:
    """The whole page."""
    counts = ", ".join(f"{n} {state.lower()}" for state, n in parts.counts.items() if n)
    body = [f"<h1>Study {html.escape(parts.study)}</h1>", f"<p>{html.escape(parts.description)}</p>",
            f"<p>Trials: {html.escape(counts or 'none')}. Storage: <code>{html.escape(parts.storage)}</code>.</p>"]
    if parts.message:
        body.append(f'<p class="warning">{html.escape(parts.message)}</p>')
    if parts.refit:
        body += ["<h2>Refit: each configuration over its seeds and folds (mean ± standard deviation)</h2>",
                 f"<pre>{html.escape(parts.refit)}</pre>"]
    if parts.top:
        body += [f"<h2>Top {len(parts.top)} trials (by validation mDice)</h2>", top_table(parts.top)]
    if parts.test_own_size:
        body += [f"<h2>Trial {parts.top[0].number} on the test split, as polyp.evaluate scores it</h2>",
                 own_size_table(parts.test_own_size)]
    body.append("<h2>Files</h2><ul>")
    labels = {"trials.csv": "trials.csv: one row per trial", "refit.csv": "refit.csv: one row per refit configuration",
              "loss_curves.html": "loss curves of all trials (interactive)",
              "loss_curves.png": "loss curves of all trials (PNG)",
              "speed_front.html": "validation score against latency per frame, with the Pareto front (interactive)",
              "speed_front.png": "validation score against latency per frame, with the Pareto front (PNG)"}
    body += [f"<li>{_link(path, labels.get(name, name))}</li>" for name, path in parts.files.items()]
    for name, (title, _) in OPTUNA_PLOTS.items():
        if name not in parts.optuna_plots:  # the Pareto front of a single-objective study
            continue
        written = parts.optuna_plots[name]
        body.append(f"<li>{_link(written, title)}</li>" if isinstance(written, Path)
                    else f'<li class="skipped">{html.escape(title)}: skipped ({html.escape(written)})</li>')
    body.append("</ul>")
    if "loss_curves.png" in parts.files:
        body += ["<h2>Loss curves</h2>", _figure(parts.files["loss_curves.png"], "train/val loss and val mDice per epoch")]
    if "speed_front.png" in parts.files:
        body += ["<h2>Accuracy against speed</h2>", _figure(parts.files["speed_front.png"],
                 "each complete trial's validation score against its model's ms per frame; red: the Pareto front")]
    if parts.sheets:
        body.append("<h2>Predictions of the top trials on the same test images</h2>")
        body += [_figure(sheet, f"trial {number}") for number, sheet in parts.sheets.items()]
    if parts.gradcam is not None:
        body += ["<h2>What the best model looks at (Grad-CAM)</h2>", _figure(parts.gradcam, "image | prediction | Grad-CAM")]
    return (f"<!doctype html>\n<html><head><meta charset='utf-8'><title>Study {html.escape(parts.study)}</title>"
            f"<style>{STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
