"""Which validation score picks the best epoch (and a search's best trial): the objective.

The scores of one epoch are the in-domain validation split's mDice ("val"), each training set's own part of
it (when there are several) and each external validation set's, by name. The objective is one of:
`mean` (the default: the mean over the in-domain split and every external set), `worst` (their minimum,
for a model that must hold up everywhere), or the name of one set.

Example:
    >>> objective_value("worst", {"val": 0.9, "cvc": 0.7}, external=["cvc"])
    0.7
    >>> objective_value("mean", {"val": 0.9}, external=[])
    0.9
"""

from __future__ import annotations

import math

OBJECTIVE_WORDS = ("mean", "worst")
IN_DOMAIN = "val"  # the in-domain validation split's score


def objective_problem(objective: str, training: list[str], external: list[str]) -> str | None:
    """Why `objective` names no score of these sets, or None."""
    if objective in OBJECTIVE_WORDS or objective in training or objective in external:
        return None
    names = [*OBJECTIVE_WORDS, *training, *external]
    return f"objective {objective!r} names no validation set; use one of {', '.join(names)}"


def objective_value(objective: str, scores: dict[str, float], external: list[str]) -> float:
    """The objective's value of one epoch's `scores` ({"val": ..., set name: mDice}).

    `mean` and `worst` run over the in-domain split (when it has images: its score is not NaN) and every
    external set; a training set's name picks its own part of the in-domain split ("val" when it is the only
    training set, whose part is all of it).
    """
    if objective in OBJECTIVE_WORDS:
        values = [scores[IN_DOMAIN]] if not math.isnan(scores.get(IN_DOMAIN, math.nan)) else []
        values += [scores[name] for name in external]
        if not values:
            return math.nan
        return sum(values) / len(values) if objective == "mean" else min(values)
    return scores.get(objective, scores.get(IN_DOMAIN, math.nan))
