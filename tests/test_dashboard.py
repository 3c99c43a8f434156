"""`python -m search.dashboard`: optuna-dashboard over a finished study, its trial notes and artifacts."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from fake_study import FakeStudy, shared_study
from wsgi_serving import serving

from search.dashboard import dashboard_app, main
from search.engine.artifacts import open_artifact_store
from search.engine.storage import default_storage_url, open_storage

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = REPO / "test-output" / "dashboard-trial.png"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> FakeStudy:
    return shared_study(tmp_path_factory)


def get(url: str) -> tuple[str, bytes]:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.headers.get_content_type(), response.read()


def test_each_finished_trial_has_a_note_with_its_pictures_and_artifacts(study):
    storage = open_storage(default_storage_url(study.run_dir))
    with serving(dashboard_app(storage, open_artifact_store(study.run_dir))) as base:
        summaries = json.loads(get(f"{base}/api/studies")[1])["study_summaries"]
        study_id = next(s["study_id"] for s in summaries if s["study_name"] == "mini")
        detail = json.loads(get(f"{base}/api/studies/{study_id}?after=0")[1])
        for trial in detail["trials"]:
            names = {a["filename"] for a in trial["artifacts"]}
            assert {"loss_curve.png", "predictions.png", "history.csv", "config.json"} <= names
            note = trial["note"]["body"]
            assert note.startswith(f"## Trial {trial['number']}: ")
            picture = re.search(r"!\[Predictions on fixed test images\]\((/artifacts/[^)]+)\)", note)
            assert picture, note
            kind, body = get(base + picture.group(1))
            assert kind == "image/png" and body.startswith(b"\x89PNG")


def test_the_command_refuses_a_run_folder_without_a_study(tmp_path, capsys):
    assert main(["--run-dir", str(tmp_path)]) == 2
    assert "no study database in" in capsys.readouterr().err


def test_the_command_refuses_a_busy_port(study, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["--study", str(study.toml), "--run-dir", str(study.run_dir), "--port", str(port)]) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


def start_dashboard(study: FakeStudy) -> tuple[subprocess.Popen, str]:
    """Runs `python -m search.dashboard --port 0` and returns the process and the address it printed."""
    command = [sys.executable, "-m", "search.dashboard", "--study", str(study.toml), "--run-dir", str(study.run_dir),
               "--port", "0"]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline, printed = time.monotonic() + 120, []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        printed.append(line)
        if line.startswith("open http://127.0.0.1:"):
            return process, line.split()[1]
        if not line and process.poll() is not None:
            break
    process.kill()
    raise AssertionError(f"the dashboard did not start: {''.join(printed)}")


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed (make browser installs it)")
def test_the_dashboard_in_headless_chromium_shows_a_trial_note_and_artifacts(study):
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    best = study.best
    SCREENSHOT.parent.mkdir(exist_ok=True)
    process, study_page = start_dashboard(study)
    try:
        base = study_page.split("/dashboard/")[0]
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 2700})
                page.goto(f"{base}/dashboard/")
                page.get_by_text(re.compile(r"^\d+\. mini$")).first.wait_for(timeout=60_000)
                page.goto(f"{study_page}/trials?numbers={best}")
                page.get_by_text(f"Trial {best}: completed").first.wait_for(timeout=60_000)
                page.get_by_text("predictions.png").first.wait_for(timeout=30_000)
                page.wait_for_function("Array.from(document.images).filter(i => i.src.includes('/artifacts/'))"
                                       ".every(i => i.complete && i.naturalWidth > 0)", timeout=30_000)
                pictures = page.evaluate("Array.from(document.images).filter(i => i.src.includes('/artifacts/')).length")
                width = page.evaluate("document.documentElement.scrollWidth")
                text = page.inner_text("body")
                page.screenshot(path=str(SCREENSHOT))
            finally:
                browser.close()
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert pictures >= 2  # the prediction sheet and the loss curve, inline in the note
    assert width <= 1400  # long user attrs wrap instead of stretching the page
    assert "validation (best epoch)" in text and "loss_curve.png" in text
    assert SCREENSHOT.stat().st_size > 20_000
