"""Named fake trainers for tests that pick a trainer by name: `--trainer fake_trainers:epochs_500ms`.

pytest puts tests/ on sys.path, so a command run in-process finds this module; a worker process finds it
through `search_fixtures.worker_env()`, which puts tests/ on its PYTHONPATH. An interrupting trainer counts
its calls across tests: `reset()` it at the start of a test.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from search.testing import FakeTrainer, InterruptingTrainer, fake_fit

# Slow epochs, so that several workers' trials overlap (and a killed worker leaves a trial running).
epochs_200ms = FakeTrainer(epoch_seconds=0.2)
epochs_300ms = FakeTrainer(epoch_seconds=0.3)
epochs_500ms = FakeTrainer(epoch_seconds=0.5)
epochs_1500ms = FakeTrainer(epoch_seconds=1.5)

# Ctrl-C during the second or the third trial (or CSV row) of a run.
ctrl_c_on_call_2 = InterruptingTrainer(on_call=2)
ctrl_c_on_call_3 = InterruptingTrainer(on_call=3)


class ExitOnce:
    """A trainer whose first call, across the workers of one parent command, ends its process with status 3
    (a worker that dies mid-trial); every other call trains like `fake_fit`. The workers of one command share
    their parent's pid, which names the marker file."""

    def __call__(self, cfg, data, reporter=None, evaluate_test=True):
        marker = Path(tempfile.gettempdir()) / f"polyp-exit-once-{os.getppid()}"
        try:
            marker.open("x").close()
        except FileExistsError:
            return fake_fit(cfg, data, reporter, evaluate_test)
        os._exit(3)


exit_once = ExitOnce()
