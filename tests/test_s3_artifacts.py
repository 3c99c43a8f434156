"""Trials' files in an S3 bucket: workers without a shared folder, and a report and export from a third one.

The S3 API is a real server on 127.0.0.1 (moto's server mode, from the package registry), not a mock of
boto3: the commands talk to it over HTTP with AWS_ENDPOINT_URL, as they would to MinIO or AWS.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
from search_fixtures import TINY_STUDY, fast_pictures, finished_count, free_port, search_cache, write_study  # noqa: F401

from polyp.checkpoint import load_checkpoint
from search.analyze import main as analyze_main
from search.dashboard import dashboard_app
from search.engine.artifacts import open_artifact_store
from search.engine.record import TrialRecord
from search.export import main as export_main
from search.run import main as run_main

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")

pytestmark = pytest.mark.usefixtures("search_cache", "fast_pictures")
BUCKET = "polyp-runs"
FAKE = ["--trainer", "search.testing:fake_fit", "--data", "synthetic", "--quiet"]



@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> str:
    """An S3 server on 127.0.0.1 with an empty bucket; AWS_ENDPOINT_URL and test credentials point at it."""
    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret-never-printed")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    yield f"http://127.0.0.1:{port}"
    server.stop()


def _study(tmp_path: Path) -> Path:
    return write_study(tmp_path, {**TINY_STUDY, "run": {**TINY_STUDY["run"], "synthetic_count": 16}})


def test_workers_without_a_shared_folder_share_one_bucket(s3: str, tmp_path: Path, capsys):
    study, storage = _study(tmp_path), f"sqlite:///{tmp_path / 'optuna.db'}"
    where = ["--study", str(study), "--storage", storage, "--artifacts", f"s3://{BUCKET}/studies"]
    assert run_main([*where, "--run-dir", str(tmp_path / "machine-a"), "--n-trials", "3", *FAKE]) == 0
    assert run_main([*where, "--run-dir", str(tmp_path / "machine-b"), "--n-trials", "6", *FAKE]) == 0
    trials = optuna.load_study(study_name="tiny", storage=storage).trials
    assert finished_count(optuna.load_study(study_name="tiny", storage=storage)) == 6
    keys = {item["Key"] for item in boto3.client("s3").list_objects_v2(Bucket=BUCKET)["Contents"]}
    for trial in trials:
        ids = TrialRecord.of(trial).artifacts
        assert "history.csv" in ids and {f"studies/{i}" for i in ids.values()} <= keys

    reader = tmp_path / "machine-c"  # ran no trial: everything comes from the database and the bucket
    assert analyze_main([*where, "--run-dir", str(reader), "--top", "2"]) == 0
    assert list((reader / "tiny" / "report").glob("predictions-trial-*.png")), "sheets drawn from S3 checkpoints"
    assert export_main([*where, "--run-dir", str(reader), "--out", str(tmp_path / "exported")]) == 0
    model, info = load_checkpoint(tmp_path / "exported")
    assert info.extra["trial"] == optuna.load_study(study_name="tiny", storage=storage).best_trial.number
    assert "test-secret-never-printed" not in capsys.readouterr().out


def test_the_dashboard_serves_artifacts_from_the_bucket(s3: str, tmp_path: Path):
    from wsgi_serving import serving

    study, storage = _study(tmp_path), f"sqlite:///{tmp_path / 'optuna.db'}"
    assert run_main(["--study", str(study), "--storage", storage, "--artifacts", f"s3://{BUCKET}",
                     "--run-dir", str(tmp_path / "runs"), "--n-trials", "1", *FAKE]) == 0
    trial = optuna.load_study(study_name="tiny", storage=storage).trials[0]
    artifact = TrialRecord.of(trial).artifacts["history.csv"]
    optuna_storage = optuna.storages.RDBStorage(storage)
    with serving(dashboard_app(optuna_storage, open_artifact_store(tmp_path, f"s3://{BUCKET}"))) as base:
        study_id = optuna_storage.get_study_id_from_name("tiny")
        url = f"{base}/artifacts/{study_id}/{trial._trial_id}/{artifact}"
        with urllib.request.urlopen(url, timeout=30) as response:
            assert response.read().startswith(b"epoch,")


@pytest.mark.parametrize("case, words", [
    ("missing-bucket", "bucket 'no-such-bucket' does not exist"),
    ("unreachable", "cannot reach the S3 endpoint http://127.0.0.1:1"),
    ("no-scheme", "the AWS settings do not make an S3 client"),
])
def test_a_store_that_cannot_be_used_stops_the_run_before_training(s3: str, tmp_path: Path, monkeypatch, capsys,
                                                                    case: str, words: str):
    bucket = "no-such-bucket" if case == "missing-bucket" else BUCKET
    if case == "unreachable":
        monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    if case == "no-scheme":
        monkeypatch.setenv("AWS_ENDPOINT_URL", "minio:9000")
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    code = run_main(["--study", str(_study(tmp_path)), "--storage", storage, "--artifacts", f"s3://{bucket}/x",
                     "--run-dir", str(tmp_path / "runs"), "--n-trials", "2", *FAKE])
    errors = capsys.readouterr().err
    assert code == 2 and words in errors, errors
    assert "test-secret-never-printed" not in errors
    assert not (tmp_path / "runs" / "tiny").exists() or not list((tmp_path / "runs" / "tiny").glob("trial-*"))


def test_refused_credentials_stop_the_run_before_training(tmp_path: Path, monkeypatch, capsys):
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.3)
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "not-a-key")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret-never-printed")
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        code = run_main(["--study", str(_study(tmp_path)), "--storage", f"sqlite:///{tmp_path / 'optuna.db'}",
                         "--artifacts", f"s3://{BUCKET}", "--run-dir", str(tmp_path / "runs"), "--n-trials", "1", *FAKE])
    finally:
        server.terminate()
        server.wait(timeout=30)
    errors = capsys.readouterr().err
    assert code == 2 and "refused the credentials" in errors, errors
    assert "wrong-secret-never-printed" not in errors


def test_an_artifacts_folder_that_is_a_file_is_refused(tmp_path: Path, capsys):
    (tmp_path / "a-file").write_text("not a folder")
    code = run_main(["--study", str(_study(tmp_path)), "--artifacts", str(tmp_path / "a-file"),
                     "--run-dir", str(tmp_path / "runs"), "--n-trials", "1", *FAKE])
    assert code == 2 and f"--artifacts {tmp_path / 'a-file'}: cannot be used as a folder" in capsys.readouterr().err
