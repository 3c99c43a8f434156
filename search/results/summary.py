"""What a search command prints at its end: the best trials with their test metrics, and what to open next."""

from __future__ import annotations

from optuna.trial import TrialState

from search.engine.record import TrialRecord, format_number, set_scores, trial_value
from search.engine.session import Session
from search.engine.storage import command_url, password_hint, safe_url


def summary_table(session: Session, top: int = 5) -> str:
    """The best finished trials with their test metrics and output folders."""
    trials = [t for t in session.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    trials.sort(key=trial_value, reverse=True)
    states = {s: 0 for s in TrialState}
    for t in session.study.get_trials(deepcopy=False):
        states[t.state] += 1
    lines = [f"study {session.spec.name}: {states[TrialState.COMPLETE]} complete, {states[TrialState.PRUNED]} pruned, "
             f"{states[TrialState.FAIL]} failed  (storage {safe_url(session.storage_url)})",
             ""]
    records = [TrialRecord.of(trial) for trial in trials[:top]]
    names = sorted({key for record in records for key in set_scores(record.val) if key.endswith("_mdice")})
    label = "objective" if names else "val mDice"  # the trials' value: the objective once several sets are scored
    extra = "".join(f"  {'val ' + key[: -len('_mdice')]:>10}" for key in names)
    timed = any(record.latency for record in records)  # ms per frame: PyTorch / ONNX Runtime
    lines[-1] = (f"{'trial':>5}  {label:>9}{extra}  {'test mDice':>10}  {'test mIoU':>9}"
                 f"{'  ms/frame torch/onnx' if timed else ''}  config / outputs")
    for record in records:
        cells = "".join(f"  {record.val.get(key, float('nan')):>10.4f}" for key in names)
        speed = "/".join(format_number(record.latency_ms(runtime), 1, missing="–") for runtime in ("torch", "onnx"))
        lines.append(f"{record.number:>5}  {record.value:>9.4f}{cells}  {record.test.get('mdice', float('nan')):>10.4f}  "
                     f"{record.test.get('miou', float('nan')):>9.4f}{f'  {speed:>20}' if timed else ''}  "
                     f"{record.describe()}\n{'':>40}{record.output_dir}")
    return "\n".join(lines)


def next_steps(session: Session) -> str:
    """What to open next; a password in the storage URL is left out of the commands (and said how to give)."""
    study = f"--study {session.spec.name} --run-dir {session.run_dir}"
    url = session.storage_url
    storage = f" --storage '{command_url(url)}'" if url.split(":")[0] != "sqlite" else ""
    hint = password_hint(url)
    return "\n".join([
        "next:" + (f" ({hint})" if hint else ""),
        f"  report:    python -m search.analyze {study}{storage}",
        f"  dashboard: python -m search.dashboard {study}{storage}",
        f"  export:    python -m search.export {study}{storage} --out {session.run_dir}/{session.spec.name}/best-model",
    ])
