"""What search.auto's model card says, gathered from its studies, its choice, its export and its scores."""

from __future__ import annotations

from pathlib import Path

from optuna.trial import TrialState

from polyp.data import Split
from polyp.latency import Latency
from search.engine.record import TrialRecord, stage_source, trial_value
from search.engine.session import Session
from search.planning.budget import format_duration, minutes
from search.planning.card import INTENDED_USE, Card, number, terms_of, versions
from search.planning.choice import Choice
from search.planning.delivery import SetResult
from search.planning.plan import Stage
from search.results.refit_table import rank_correlation, refit_rows, spearman

KEY_FIELDS = ("arch", "encoder", "encoder_depth", "decoder_attention", "image_size", "epochs", "lr", "batch_size",
              "weight_decay", "loss", "augment", "schedule", "encoder_weights")


def stage_values(s1: Session, source: Session, refit: Session, source_trial: int) -> list[list[str]]:
    """The chosen configuration's value in each stage (the refit's `source`: NAME.s2, or NAME.s1 when stage 2
    completed nothing)."""
    from_s1 = source.spec.name == s1.spec.name
    s2_trials = {} if from_s1 else {t.number: t for t in source.study.get_trials(deepcopy=False)}
    s1_trials = {t.number: t for t in s1.study.get_trials(deepcopy=False)}
    rows = {row.source: row for row in refit_rows(refit.study)}
    s2_trial = s2_trials.get(source_trial)
    s1_number = stage_source(s2_trial) if s2_trial is not None else source_trial
    s1_trial = s1_trials.get(s1_number)
    row = rows.get(source_trial)
    refit_cell = "-" if row is None or row.val_mean is None else (
        f"{row.val_mean:.4f} ± {row.val_std:.4f} ({row.runs} runs)" if row.runs > 1 else f"{row.val_mean:.4f} (1 run)")
    return [["s1 (search)", f"trial {s1_number}", number(trial_value(s1_trial) if s1_trial else None)],
            ["s2 (larger)", f"trial {source_trial}" if s2_trial else "-", number(trial_value(s2_trial) if s2_trial else None)],
            ["s3 (refit)", "mean ± sd over its runs", refit_cell]]


def correlations(s1: Session, source: Session, refit: Session) -> list[list[str]]:
    """Spearman's rho between the stages' rankings of the configurations both scored."""
    s1_values = {t.number: trial_value(t) for t in s1.study.get_trials(deepcopy=False)}
    s2_trials = [] if source.spec.name == s1.spec.name else source.study.get_trials(
        deepcopy=False, states=(TrialState.COMPLETE,))
    pairs = [(a, b) for t in s2_trials if (a := s1_values.get(stage_source(t))) is not None
             and (b := trial_value(t)) is not None]
    rows = refit_rows(refit.study)
    first, second = spearman(pairs), rank_correlation(rows)
    return [["s1 -> s2", str(len(pairs)), number(first, 3)],
            ["s2 -> s3 (refit mean)", str(sum(r.val_mean is not None for r in rows)), number(second, 3)]]


def data_rows(refit: Session) -> list[list[str]]:
    split = Split.load(refit.folder / "split.json")
    if split.sets:
        rows = [[name, part["folder"], str(len(part["train"])), str(len(part["val"])), str(len(part["test"])),
                 part["method"], terms_of(name, part["folder"])] for name, part in split.sets.items()]
    else:
        source = refit.spec.run.sources()[0]
        rows = [[source.name, str(source.folder), str(len(split.train)), str(len(split.val)), str(len(split.test)),
                 split.method, terms_of(source.name, str(source.folder))]]
    for name, part in split.external.items():
        rows.append([name, part["folder"], "0", str(len(part["stems"])), "0", "validation only (never trained on)",
                     terms_of(name, part["folder"])])
    return rows


def build_card(name: str, s1: Session, source: Session, refit: Session, choice: Choice, facts: dict, latency: Latency,
               results: list[SetResult], stages: dict[str, Stage], spent: dict[str, float], budget: float,
               folder: Path) -> Card:
    card = Card(f"Model card: {name} (search.auto)")
    card.heading("Intended use and limits")
    card.text(INTENDED_USE)
    card.heading("Data")
    extra = [[r.name, str(r.root), "0", "0", str(r.summary["images"]), "test only (--eval-data, never used to choose)",
              terms_of(r.name, str(r.root))] for r in results if not r.name.endswith("/test")]
    card.table(["set", "folder", "train", "validation", "test", "split", "terms"], data_rows(refit) + extra)
    card.heading("The model and why it was chosen")
    card.text(f"Chosen on validation images alone: {choice.describe()}. Candidates: the best refit run, the ensemble "
              f"of the winning configuration's runs and of each configuration's best run, each with TTA none, flip "
              f"or d4 and thresholds 0.2 to 0.8; a costlier one is taken only when it beats the simplest one within "
              f"0.002 of the best. Use it as it was scored: polyp.predict (or polyp.evaluate) --tta {choice.tta} "
              f"--threshold {choice.threshold:g} (also kept in training.json as \"auto\").")
    trials = {t.number: t for t in refit.study.get_trials(deepcopy=False)}
    first = TrialRecord.of(trials[choice.candidate.runs[0]])
    config = first.config
    card.table(["setting", "value"], [[key, f"{value:.3g}" if isinstance(value := config.get(key, "-"), float) else value]
                                      for key in KEY_FIELDS])
    card.text("Its validation value in each stage:")
    card.table(["stage", "trial", "validation value"], stage_values(s1, source, refit, first.refit_source))
    card.text("How well each stage's ranking of the configurations predicted the next stage's (Spearman's rho; "
              "1 = the same order):")
    card.table(["stages", "configurations", "rho"], correlations(s1, source, refit))
    card.heading("Metrics per set")
    card.text(f"At each image's own size, TTA {choice.tta}, threshold {choice.threshold:g} (polyp.evaluate's measures; "
              "mDice over thresholds is the toolboxes' meanDic: the images' Dice at 256 thresholds, averaged).")
    card.table(["set", "images", "mDice", "mDice over thresholds", "mIoU", "Sα", "mean Eφ", "Fβw", "MAE", "HD95 px",
                "ECE"],
               [[r.name, r.summary["images"], number(r.summary["dice"]), number(r.mdice_thresholds),
                 number(r.summary["iou"]), number(r.summary["sm"]), number(r.summary["em_mean"]),
                 number(r.summary["wfm"]), number(r.summary["mae"]), number(r.summary["hd95"], 2), number(r.ece, 3)]
                for r in results])
    for result in results:
        card.image(result.worst, f"{result.name}: the images with the lowest Dice (image, truth, prediction)")
    card.image(folder / "evaluation" / "reliability.png", "Reliability: observed polyp share per predicted probability")
    card.heading("Latency on this machine")
    card.table(["runtime", "ms per frame (batch 1)", "frames per second"],
               [[runtime, number(ms, 1), number(1000 / ms, 1) if ms else "-"]
                for runtime, ms in (("PyTorch", latency.torch_ms), ("ONNX Runtime", latency.onnx_ms))] +
               [["input", f"{latency.image_size} px", f"{latency.device}, {latency.threads or 'all'} threads"]])
    card.heading("Budget")
    card.table(["part", "planned", "spent"],
               [["setup (storage, data)", "-", minutes(spent.get("setup", 0.0))],
                ["timing", "-", minutes(spent.get("timing", 0.0))]] +
               [[f"{n} {s.image_size} px, {s.epochs} epochs", minutes(s.seconds), minutes(spent.get(n, 0.0))]
                for n, s in stages.items()] +
               [["deliver", "-", minutes(spent.get("deliver", 0.0))],
                ["total", format_duration(budget), f"{minutes(sum(spent.values()))} "
                 f"({100 * sum(spent.values()) / budget:.1f}% of the budget)"]])
    card.heading("Software")
    card.table(["package", "version"], versions())
    return card
