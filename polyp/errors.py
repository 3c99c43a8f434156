"""The project's one error base class: what a command reports as a one-line error instead of a traceback.

Example:
    >>> from polyp.errors import PolypError
    >>> from polyp.config import ConfigError
    >>> issubclass(ConfigError, PolypError)
    True
"""

from __future__ import annotations


class PolypError(ValueError):
    """Bad input from the user (a file, a flag, a config value); the message says what and where.

    Commands print these as one-line errors and exit with status 2; any other exception is a bug and
    shows its traceback. A subclass of ValueError, so callers that caught ValueError keep working.
    """
