"""Seconds of each command of the README walk-through that the default test run makes
(tests/test_readme_commands.py, the commands `SLOW_ONLY` leaves in), slowest first: where the test time goes.

    .venv/bin/python benchmarks/readme_walk.py --top 15
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import test_readme_commands as walk_test  # noqa: E402  (tests/, beside the repository's packages)


class _Environment:
    """What the walk asks of pytest's monkeypatch: set a variable (for this process and its commands)."""

    def setenv(self, name: str, value: str) -> None:
        os.environ[name] = value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=15, help="how many of the slowest commands to print")
    args = parser.parse_args(argv)
    run, times = subprocess.run, []

    def timed(command, *rest, **options):
        started = time.monotonic()
        try:
            return run(command, *rest, **options)
        finally:
            times.append((time.monotonic() - started, " ".join(map(str, command))[:150]))

    walk_test.subprocess.run = timed
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as folder:
        walk_test.walk(walk_test.README, Path(folder), _Environment(), leave_out=walk_test.SLOW_ONLY)
    print(f"README walk: {time.monotonic() - started:.1f} s, {len(times)} commands (servers not counted)")
    for seconds, command in sorted(times, reverse=True)[:args.top]:
        print(f"{seconds:6.1f} s  {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
