"""The search's own errors: a study definition or a command-line value that cannot be used.

Both are `PolypError`s, which the commands print as one line with exit status 2 (`search.cli.fail`).
"""

from __future__ import annotations

from polyp.errors import PolypError


class StudyError(PolypError):
    """A study definition that cannot be used; the message names the file and key."""


class CommandLineError(PolypError):
    """A flag whose value cannot be used (a module that does not import, a folder that cannot be written)."""
