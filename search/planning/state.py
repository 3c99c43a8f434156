"""What search.auto keeps between runs of the same command, on its stage-1 study (NAME.s1) in the storage: the
inputs it was started with, the plan of each stage begun, the seconds spent per stage, the stages finished,
how far the trials ran over their estimates, and where the delivered model is. They are kept through
search.engine.record (`auto_attribute`), the owner of every study attribute.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import optuna

from search.engine.record import auto_attribute, record_auto_attribute
from search.planning.plan import Stage

INPUTS, STAGES, SPENT, DONE, CORRECTION, DELIVERED, BUDGET = (
    "inputs", "stages", "spent", "done", "correction", "delivered", "budget")


class RunState:
    """search.auto's state on its stage-1 study."""

    def __init__(self, study: optuna.Study):
        self.study = study

    def _get(self, key: str, default: Any) -> Any:
        return auto_attribute(self.study, key, default)

    def _set(self, key: str, value: Any) -> None:
        record_auto_attribute(self.study, key, value)

    def inputs(self) -> dict | None:
        return self._get(INPUTS, None)

    def record_inputs(self, inputs: dict) -> None:
        self._set(INPUTS, inputs)

    def spent(self) -> dict[str, float]:
        """Seconds spent per part (setup: storage and data, timing, s1, s2, s3, deliver) over every run of the command."""
        return dict(self._get(SPENT, {}))

    def set_spent(self, part: str, seconds: float) -> None:
        self._set(SPENT, {**self.spent(), part: round(seconds, 2)})

    def total_spent(self) -> float:
        return sum(self.spent().values())

    def stages(self) -> dict[str, Stage]:
        """The plan of each stage once it began (it stands on a resume)."""
        return {name: Stage(**fields) for name, fields in self._get(STAGES, {}).items()}

    def record_stage(self, stage: Stage) -> None:
        self._set(STAGES, {**self._get(STAGES, {}), stage.name: asdict(stage)})

    def done(self, name: str) -> bool:
        return name in self._get(DONE, [])

    def mark_done(self, name: str) -> None:
        if not self.done(name):
            self._set(DONE, [*self._get(DONE, []), name])

    def correction(self) -> float:
        """Measured epoch seconds / predicted, of the trials so far (1.0: none yet)."""
        return float(self._get(CORRECTION, 1.0))

    def record_correction(self, value: float) -> None:
        self._set(CORRECTION, round(value, 4))

    def budget(self) -> float | None:
        """The --budget of the last run of the command (seconds)."""
        return self._get(BUDGET, None)

    def record_budget(self, seconds: float) -> None:
        self._set(BUDGET, seconds)

    def delivered(self) -> str | None:
        return self._get(DELIVERED, None)

    def record_delivered(self, folder: str) -> None:
        self._set(DELIVERED, folder)


def differences(stored: dict, now: dict) -> list[str]:
    """What differs between the inputs a run was started with and this command's, one entry per key."""
    keys = sorted(set(stored) | set(now))
    return [f"{key}: {stored.get(key)!r} before, {now.get(key)!r} now" for key in keys if stored.get(key) != now.get(key)]
