"""The storage URL a user types works in Optuna's own clients, not only in our commands.

SQLAlchemy 2.1 maps `postgresql://` to psycopg 3, so the project installs it: the URL given to
`search.run` must then open the same study in `optuna.load_study`, Optuna's CLI and optuna-dashboard.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
from pg import postgres_url  # noqa: F401
from search_fixtures import TINY_STUDY, fast_pictures, free_port, search_cache, write_study  # noqa: F401

from search.run import main as run_main

pytestmark = [pytest.mark.postgres, pytest.mark.usefixtures("search_cache", "fast_pictures")]

TRIALS = 3
BIN = Path(sys.executable).parent


@pytest.fixture
def study_made_by_search_run(tmp_path: Path, postgres_url: str, capsys) -> str:  # noqa: F811
    """A PostgreSQL study of TRIALS finished trials made by `search.run` with a plain postgresql:// URL."""
    assert postgres_url.startswith("postgresql://"), "the URL as a user types it, no +driver"
    study = write_study(tmp_path, TINY_STUDY)
    code = run_main(["--study", str(study), "--storage", postgres_url, "--run-dir", str(tmp_path / "runs"),
                     "--n-trials", str(TRIALS), "--trainer", "search.testing:fake_fit", "--data", "synthetic",
                     "--quiet"])
    capsys.readouterr()
    assert code == 0
    return postgres_url


def test_optuna_load_study_opens_the_plain_url(study_made_by_search_run: str):
    study = optuna.load_study(study_name="tiny", storage=study_made_by_search_run)
    assert len(study.trials) == TRIALS


def test_optuna_cli_reads_the_plain_url(study_made_by_search_run: str):
    done = subprocess.run([str(BIN / "optuna"), "trials", "--storage", study_made_by_search_run,
                           "--study-name", "tiny", "--format", "json"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Failed to import DB access module" not in done.stderr
    assert len(json.loads(done.stdout)) == TRIALS



def test_optuna_dashboard_serves_the_plain_url(study_made_by_search_run: str):
    port = free_port()
    server = subprocess.Popen([str(BIN / "optuna-dashboard"), study_made_by_search_run, "--host", "127.0.0.1",
                               "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, answer = time.monotonic() + 60, None
        while answer is None and time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=5) as response:
                    answer = json.load(response)
            except OSError:
                time.sleep(0.5)
        assert answer is not None, f"optuna-dashboard did not answer: {server.poll()=}"
        studies = {study["study_name"]: study for study in answer["study_summaries"]}
        assert "tiny" in studies
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0]
    assert "Failed to import DB access module" not in output, output
