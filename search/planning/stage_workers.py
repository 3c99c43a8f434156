"""search.auto --workers N: each stage's trials trained by N processes that share the stage's study.

The command plans, enqueues and delivers in its own process; for each stage it starts N copies of its own command
line with `--stage-worker STAGE --stage-deadline T` (and each worker's share of the machine, as
`search.engine.workers` gives it: on CUDA one device of `--devices`, on the CPU cores / N threads), relays their
lines and waits. The workers run the stage's trial loop against the stage's deadline and stop there; the time is
kept by the command's own clock, so resuming, the plan and the budget work as with one process.
"""

from __future__ import annotations

from dataclasses import dataclass

from search.engine.workers import WorkerPlan, run_workers
from search.study.errors import StudyError

INTERRUPTED = 130


@dataclass(frozen=True)
class StageWorkers:
    """The worker processes of every stage: their command lines (search.auto's own, without --workers/--devices,
    with each worker's share of the machine) and environments."""

    plan: WorkerPlan

    @property
    def count(self) -> int:
        return len(self.plan.argv)

    def threads(self, configured: int) -> int:
        """The torch threads each worker trains with: the share its command line gives, else `configured`."""
        argv = self.plan.argv[0]
        given = [argv[i + 1] for i, word in enumerate(argv[:-1]) if word == "--threads"]
        return int(given[-1]) if given else configured

    def commands(self, stage: str, deadline: float) -> WorkerPlan:
        """Each worker's command line for one stage."""
        extra = ["--stage-worker", stage, "--stage-deadline", f"{deadline:.3f}"]
        return WorkerPlan([[*argv, *extra] for argv in self.plan.argv], self.plan.environments)

    def run(self, stage: str, deadline: float) -> None:
        """Runs the stage in the workers until each has stopped (at the deadline at the latest)."""
        code = run_workers("search.auto", self.commands(stage, deadline))
        if code == INTERRUPTED:
            raise KeyboardInterrupt
        if code:
            raise StudyError(f"stage {stage}: its workers ended with status {code} (see their lines above); run the "
                             f"same command again to go on")
