"""Time budgets as people write them (`90m`, `2h`, `1h30m`, `45s`, `5400`) and as the commands print them.

Example:
    >>> parse_budget("1h30m"), parse_budget("90m"), parse_budget("5400")
    (5400.0, 5400.0, 5400.0)
    >>> format_duration(5430)
    '1h 30m 30s'
"""

from __future__ import annotations

import re

from search.study.errors import CommandLineError

BUDGET_FORMS = "90m, 2h, 1h30m, 45s, or a number of seconds (5400)"
_PATTERN = re.compile(r"^(?:(?P<h>\d+(?:\.\d+)?)h)?(?:(?P<m>\d+(?:\.\d+)?)m)?(?:(?P<s>\d+(?:\.\d+)?)s)?$")


def parse_budget(text: str) -> float:
    """The budget in seconds.

    Raises:
        CommandLineError: a budget written otherwise, or not above zero, naming the accepted forms.
    """
    written = text.strip().lower().replace(" ", "")
    try:
        seconds = float(written)
    except ValueError:
        match = _PATTERN.match(written)
        if not written or match is None or not any(match.groupdict().values()):
            raise CommandLineError(f"--budget {text!r}: not a time budget; write it as {BUDGET_FORMS}") from None
        parts = {unit: float(value or 0) for unit, value in match.groupdict().items()}
        seconds = 3600 * parts["h"] + 60 * parts["m"] + parts["s"]
    if not seconds > 0:
        raise CommandLineError(f"--budget {text!r}: must be more than zero ({BUDGET_FORMS})")
    return seconds


def format_duration(seconds: float) -> str:
    """`1h 30m 30s`, `12m 5s`, `40s`: whole seconds."""
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours}h"] * bool(hours) + [f"{minutes}m"] * bool(minutes) + [f"{secs}s"] * bool(secs or not total)
    return " ".join(parts) or "0s"


def minutes(seconds: float) -> str:
    """`12.3 min`."""
    return f"{seconds / 60:.1f} min"
