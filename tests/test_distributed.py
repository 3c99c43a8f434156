"""Several `python -m search.run` workers on one study: PostgreSQL (and two on one SQLite file).

Every worker is a separate process with a fake trainer whose epochs sleep (tests/fake_trainers.py), so a
test takes seconds; the PostgreSQL tests each get a fresh database (tests/pg.py) that is dropped afterwards.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from optuna.storages import RDBStorage
from optuna.trial import TrialState
from pg import postgres_url  # noqa: F401  (the fixture)
from search_fixtures import ROOT, worker_env

from search.engine.storage import open_storage, retried_trial_number
from search.engine.trial_loop import run_until

STUDY_NAME = "distributed"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
STARTUP_TRIALS = 2
LR = optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)
STUDY_TOML = f"""
[study]
name = "{STUDY_NAME}"
[run]
sampler = "tpe"
pruner = "median"
startup_trials = {STARTUP_TRIALS}
pruner_startup_trials = {STARTUP_TRIALS}
warmup_epochs = 1
sample_images = 1
val_fraction = 0.25
test_fraction = 0.25
latency = "torch"
[train]
arch = "linknet"
encoder = "mobilenet_v2"
encoder_depth = 3
encoder_weights = "none"
image_size = 32
epochs = 3
batch_size = 2
augment = "none"
[space]
lr = {{ low = 1e-6, high = 1.0, log = true }}
"""


@pytest.fixture
def study_file(tmp_path: Path) -> Path:
    """A one-parameter study (lr) with the median pruner, on a 32 px LinkNet the fake trainer never trains."""
    path = tmp_path / f"{STUDY_NAME}.toml"
    path.write_text(STUDY_TOML)
    return path


class Worker:
    """One `python -m search.run` process, its output in a file."""

    def __init__(self, args: list[str], log: Path):
        self.log = log
        self.handle = open(log, "w")
        self.process = subprocess.Popen([sys.executable, "-m", "search.run", *args], cwd=ROOT, env=worker_env(),
                                        stdout=self.handle, stderr=subprocess.STDOUT)
        self.pid = self.process.pid

    def wait(self, timeout: float = 400) -> int:  # generous: CI machines can be slow, a pass takes ~30 s
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"worker {self.pid} did not finish in {timeout} s:\n{self.output()}") from None
        finally:
            self.handle.close()

    def output(self) -> str:
        return self.log.read_text()


def start_workers(count: int, tmp_path: Path, study_file: Path, data: Path, n_trials: int, storage: str | None,
                  trainer: str) -> list[Worker]:
    """Starts `count` workers with the named trainer on the same study, storage and run folder."""
    args = ["--study", str(study_file), "--n-trials", str(n_trials), "--data", str(data), "--run-dir", str(tmp_path / "runs"),
            "--trainer", trainer, "--heartbeat", "3", "--quiet"]
    if storage:
        args += ["--storage", storage]
    return [Worker(args, tmp_path / f"worker-{i}.log") for i in range(count)]


def finish(workers: list[Worker]) -> None:
    """Waits for every worker and checks that each ended well."""
    codes = [worker.wait() for worker in workers]
    for worker, code in zip(workers, codes, strict=True):
        assert code == 0, f"worker {worker.pid} exited {code}:\n{worker.output()}"


def load_trials(url: str) -> list[optuna.trial.FrozenTrial]:
    """Every trial of the study, read afresh (as a dashboard would); none before a worker has created it."""
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:  # look before opening it with Optuna, which would otherwise create tables while the workers do
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT study_id FROM studies WHERE study_name = :name"),
                               {"name": STUDY_NAME}).one()
    except (sqlalchemy.exc.SQLAlchemyError, sqlalchemy.exc.NoResultFound):
        return []
    finally:
        engine.dispose()
    storage = RDBStorage(url, skip_table_creation=True)
    try:
        return optuna.load_study(study_name=STUDY_NAME, storage=storage).get_trials()
    finally:
        storage.engine.dispose()  # no connection left open on the test's database


def worker_pid(trial: optuna.trial.FrozenTrial) -> int | None:
    """The pid from the trial's `worker` attribute ("host:pid")."""
    worker = trial.user_attrs.get("worker")
    return int(worker.rsplit(":", 1)[1]) if worker else None


def states(trials: list[optuna.trial.FrozenTrial]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for trial in trials:
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    return counts


def wait_for(condition, timeout: float, what: str, workers: list[Worker]):
    """Polls `condition()` until it returns something truthy; fails with the workers' output otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if any(worker.process.poll() is not None for worker in workers):
            break
        time.sleep(0.2)
    logs = "\n".join(f"--- worker {w.pid} (exit {w.process.poll()}):\n{w.output()}" for w in workers)
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.kill()
    raise AssertionError(f"gave up waiting for {what}\n{logs}")


@pytest.mark.slow  # the default run shares studies between workers in test_two_workers_on_one_sqlite_file and
@pytest.mark.postgres  # test_replay's two PostgreSQL workers
def test_three_workers_share_one_study(tmp_path, study_file, synthetic_dir, postgres_url):  # noqa: F811
    target = 6
    workers = start_workers(3, tmp_path, study_file, synthetic_dir, target, postgres_url, "fake_trainers:epochs_500ms")
    finish(workers)
    trials = load_trials(postgres_url)

    assert states(trials) == states([t for t in trials if t.state in FINISHED])  # nothing failed, running or waiting
    assert len(trials) == target
    pids = {worker_pid(t) for t in trials}
    assert pids <= {w.pid for w in workers} and len(pids) >= 2, f"trials by workers {pids}"
    lrs = [t.params["lr"] for t in trials]
    assert len(set(lrs)) == len(lrs), f"workers sampled the same config twice: {lrs}"
    # Each pruned trial was compared with the trials of every worker: at least one was pruned while
    # other workers' completed trials (with values at the same epoch) were in the study.
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    completed = [t for t in trials if t.state == TrialState.COMPLETE]
    assert pruned, "the median pruner stopped no trial"
    assert any(
        any(worker_pid(c) != worker_pid(p) and c.datetime_complete < p.datetime_complete
            and max(p.intermediate_values) in c.intermediate_values for c in completed)
        for p in pruned
    ), "no pruned trial saw another worker's trials"
    for worker in workers:
        assert f"target {target} finished trials" in worker.output()


@pytest.mark.slow  # the default run retries a dead worker's trial in test_workers.py and
@pytest.mark.postgres  # test_waiting_worker_retries_a_dead_trial_when_the_rest_is_running
def test_killed_worker_trial_is_retried_by_another(tmp_path, study_file, synthetic_dir, postgres_url):  # noqa: F811
    target = 2
    workers = start_workers(2, tmp_path, study_file, synthetic_dir, target, postgres_url, "fake_trainers:epochs_1500ms")
    by_pid = {worker.pid: worker for worker in workers}

    def first_running_trial():  # once its params are sampled: a trial killed before that has none to retry
        return next((t for t in load_trials(postgres_url)
                     if t.state == TrialState.RUNNING and worker_pid(t) in by_pid and "config" in t.user_attrs), None)

    killed = wait_for(first_running_trial, 120, "a running trial with its params", workers)
    victim = by_pid.pop(worker_pid(killed))
    os.kill(victim.pid, signal.SIGKILL)
    assert victim.wait() == -signal.SIGKILL
    [survivor] = by_pid.values()
    finish([survivor])
    trials = {t.number: t for t in load_trials(postgres_url)}

    failed = trials[killed.number]
    assert failed.state == TrialState.FAIL  # marked failed by the survivor once its heartbeat went stale
    retries = [t for t in trials.values() if t.user_attrs.get("retry_of") == killed.number]
    assert len(retries) == 1, f"retries of trial {killed.number}: {[t.number for t in retries]}"
    retry = retries[0]
    assert retry.state in FINISHED
    assert failed.params and retry.params == failed.params
    assert retry.user_attrs["config"] == failed.user_attrs["config"]
    assert worker_pid(retry) == survivor.pid
    assert sum(t.state in FINISHED for t in trials.values()) == target
    assert not [t for t in trials.values() if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert f"(retry of trial {killed.number})" in survivor.output()


@pytest.mark.slow  # two processes of real training; test_workers.py shares one SQLite study between workers fast
def test_two_workers_on_one_sqlite_file(tmp_path, study_file, synthetic_dir):
    target = 4
    workers = start_workers(2, tmp_path, study_file, synthetic_dir, target, None, "fake_trainers:epochs_300ms")
    finish(workers)
    for worker in workers:
        assert "database is locked" not in worker.output()
    trials = load_trials(f"sqlite:///{tmp_path / 'runs' / 'optuna.db'}")
    assert len(trials) == target
    assert all(t.state in FINISHED for t in trials), states(trials)


OPEN_AT_ONCE = """
import sys, time
import optuna
from search.engine.storage import open_storage
url, start = sys.argv[1], float(sys.argv[2])
time.sleep(max(0.0, start - time.time()))
optuna.create_study(study_name="at-once", storage=open_storage(url, 2), load_if_exists=True)
"""


@pytest.mark.parametrize("backend", [pytest.param("postgresql", marks=pytest.mark.postgres), "sqlite"])
def test_workers_opening_a_fresh_database_at_once_all_start(backend, tmp_path, request):
    """Three workers create the tables of an empty database at the same moment (they used to race)."""
    url = request.getfixturevalue("postgres_url") if backend == "postgresql" else f"sqlite:///{tmp_path / 'optuna.db'}"
    start = time.time() + 4  # after every interpreter has imported optuna
    processes = [subprocess.Popen([sys.executable, "-c", OPEN_AT_ONCE, url, str(start)], env=worker_env(), text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(3)]
    outputs = [process.communicate(timeout=300)[0] for process in processes]
    for process, output in zip(processes, outputs, strict=True):
        assert process.returncode == 0, output


class LrObjective:
    """A stand-in objective for `run_until`: suggests lr and returns it, recording which trials ran."""

    def __init__(self, take_over_first: RDBStorage | None = None):
        self.ran: list[int] = []
        self.take_over_first = take_over_first

    def __call__(self, trial: optuna.trial.Trial) -> float:
        self.ran.append(trial.number)
        lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        if self.take_over_first is not None and len(self.ran) == 1:  # what another worker does to a late trial
            self.take_over_first.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        return lr


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")
def test_waiting_worker_retries_a_dead_trial_when_the_rest_is_running(tmp_path):
    """finished + running == N, one of the running trials dead: the waiting worker fails it and runs its retry."""
    storage = open_storage(f"sqlite:///{tmp_path / 'optuna.db'}", heartbeat_s=1)
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    study.add_trial(optuna.trial.create_trial(params={"lr": 1e-3}, distributions={"lr": LR}, value=1e-3))
    dead = study.ask({"lr": LR})
    storage.record_heartbeat(dead._trial_id)  # its worker beat once and then died
    time.sleep(2.5)  # longer than the grace period (2 x heartbeat)
    objective = LrObjective()

    assert run_until(study, objective, 2, storage, poll_s=0.1) == "done"
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    assert objective.ran == [2]
    assert retried_trial_number(trials[2]) == dead.number and trials[2].params == trials[1].params


def test_worker_goes_on_when_another_marked_its_trial_failed(tmp_path, capsys):
    """A trial failed from outside (its heartbeat looked stale to another worker) does not stop this worker."""
    storage = open_storage(f"sqlite:///{tmp_path / 'optuna.db'}", heartbeat_s=5)
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    objective = LrObjective(take_over_first=storage)

    assert run_until(study, objective, 2, storage, poll_s=0.1) == "done"
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    assert "trial 0: another worker marked it failed" in capsys.readouterr().err
