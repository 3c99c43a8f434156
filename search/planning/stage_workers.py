"""search.auto --workers N: each stage's trials trained by N processes that share the stage's study.

The command plans, enqueues and delivers in its own process; for each stage it starts N copies of its own command
line with `--stage-worker STAGE --stage-deadline T` (and each worker's share of the machine, as
`search.engine.workers` gives it: on CUDA one device of `--devices`, on the CPU cores / N threads), relays their
lines and waits. The workers run the stage's trial loop against the stage's deadline and stop there, saving the
stage's time after each trial as the command's clock does, so resuming, the plan and the budget work as with one
process.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from search.engine.workers import BAD_INPUT, INTERRUPTED, WorkerPlan, run_workers
from search.study.errors import CommandLineError


@dataclass(frozen=True)
class StageWorkers:
    """The worker processes of every stage: their command lines (search.auto's own, without --workers/--devices,
    with each worker's share of the machine) and environments."""

    plan: WorkerPlan

    @property
    def count(self) -> int:
        return len(self.plan.argv)

    def threads(self, configured: int) -> int:
        """The torch threads each worker trains with: its share of the cores, else `configured`."""
        return self.plan.threads or configured

    def commands(self, stage: str, deadline: float, most: int | None = None) -> WorkerPlan:
        """The command lines of one stage's workers (at most `most` of them)."""
        extra = ["--stage-worker", stage, "--stage-deadline", f"{deadline:.3f}"]
        count = self.count if most is None else max(0, min(self.count, most))
        return WorkerPlan([[*argv, *extra] for argv in self.plan.argv[:count]], self.plan.environments[:count],
                          self.plan.threads)

    def run(self, stage: str, deadline: float, most: int | None = None) -> None:
        """Runs the stage in the workers (at most `most`: the trials waiting) until each has stopped, at the
        deadline at the latest. A worker that dies leaves its trial to the others (the heartbeat fails it) and
        the run goes on; Ctrl-C stops them all; bad input that every worker refused stops the run."""
        commands = self.commands(stage, deadline, most)
        if not commands.argv:
            return
        code = run_workers("search.auto", commands)
        if code == INTERRUPTED:
            raise KeyboardInterrupt
        if code == BAD_INPUT:
            raise CommandLineError(f"stage {stage}: its workers refused their input (see their lines above)")
        if code:
            print(f"auto {stage}: a worker ended badly (status {code}, see above); the run goes on with what the "
                  f"stage finished", file=sys.stderr, flush=True)
