"""The commands of the README and of every docs/*.md file run as written, in order, on a fresh run folder.

Every command of a document's ```bash and ```python blocks that needs nothing from outside (no Kvasir-SEG
download, no database host, no shared folder) runs in a fresh folder, in the document's order, with smaller
numbers (one epoch, two trials, 64 px, the first rows of the spreadsheet, a short benchmark). Each document
is its own test (README.md first), so a slow one can be marked: a document starts from an empty folder
holding the first rows of `hyperparameters.csv`, plus what its commands read without making it themselves
(the demo's run folder, the synthetic set on disk; see `setup_commands`). Servers (`polyp.serve`,
`search.dashboard`) run until they print where to open them; the `curl` lines under `polyp.serve` are sent
to it while it runs.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from search_fixtures import free_port

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
DOCUMENTS = [README, *DOCS]  # the README first: the walk-through a newcomer follows
EXTERNAL = ("~/data", "db-host", "/mnt/", "ssh ", "createdb", "make test")  # data, hosts or set-up from outside
SERVERS = ("polyp.serve", "search.dashboard")
SMALLER = {"--epochs": lambda value: "1", "--n-trials": lambda value: "2", "--count": lambda value: "16",
           "--image-size": lambda value: str(min(int(value), 64)), "--size": lambda value: str(min(int(value), 64))}
DEMO = ["-m", "search.demo", "--out", "runs", "--n-trials", "4", "--epochs", "1"]  # `make demo`; trial 3 is exported
SYNTHETIC_SET = ["-m", "polyp.data.synthetic", "--out", "data/synthetic", "--count", "16", "--size", "64"]
QUICKER = {"polyp.bench": ["--steps", "1", "--rounds", "1", "--warmup", "1", "--peak-size", "256", "--predict-size", "64",
                           "--wait-steps", "2"]}
CSV_ROWS = 4  # rows of the shipped hyperparameters.csv that the replay commands train
SERVER_START_S = 120


@dataclass(frozen=True)
class Command:
    """One command of a document: its language ("bash" or "python") and its text."""

    language: str
    text: str


def readme_commands(text: str) -> list[Command]:
    """A document's bash commands (continuation lines joined, comments dropped) and python blocks, in order."""
    commands = []
    for language, body in re.findall(r"^```(bash|python)\n(.*?)^```", text, re.MULTILINE | re.DOTALL):
        if language == "python":
            commands.append(Command(language, body))
            continue
        for line in body.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                commands.append(Command(language, shlex.join(words)))
    return commands


def runnable(command: Command) -> bool:
    """Whether the command needs nothing from outside this machine and the project."""
    return not any(marker in command.text for marker in EXTERNAL)



def as_run_here(words: list[str], port: int) -> list[str]:
    """The command with this interpreter, smaller numbers and `port` for servers and their clients."""
    if words[:2] == ["make", "demo"]:
        return [sys.executable, *DEMO]
    words = [sys.executable if word == ".venv/bin/python" else word for word in words]
    words = [re.sub(r"127\.0\.0\.1:8000", f"127.0.0.1:{port}", word) for word in words]
    for index, word in enumerate(words[:-1]):
        if word in SMALLER:
            words[index + 1] = SMALLER[word](words[index + 1])
    for module, extra in QUICKER.items():
        if module in words:
            words += extra
    if any(server in words for server in SERVERS):
        if "--port" in words:
            words[words.index("--port") + 1] = str(port)
        else:
            words += ["--port", str(port)]
    return words


def _start_server(words: list[str], folder: Path) -> tuple[subprocess.Popen, str]:
    """Starts a server and waits until it prints where to open it (or ends)."""
    server = subprocess.Popen(words, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    printed, deadline = [], time.monotonic() + SERVER_START_S
    for line in server.stdout:
        printed.append(line)
        if "open http" in line or time.monotonic() > deadline:
            break
    if "polyp.serve" in words:  # uvicorn says when it listens, after our "open" line
        for line in server.stdout:
            printed.append(line)
            if "Uvicorn running" in line or "Application startup complete" in line or time.monotonic() > deadline:
                break
    return server, "".join(printed)


def _stop(server: subprocess.Popen | None) -> None:
    if server is not None:
        server.terminate()
        server.communicate(timeout=30)


def runnable_commands(document: Path) -> list[Command]:
    """The commands of `document` that this test runs, in order."""
    return [command for command in readme_commands(document.read_text()) if runnable(command)]


def setup_commands(commands: list[Command]) -> list[list[str]]:
    """What a document's commands read without making it themselves, as commands to run first (without the
    interpreter): the demo's run folder (`make demo`) for a document that reads `runs/demo` or the demo study
    from the default storage, and the synthetic set on disk for one that reads `data/synthetic`."""
    texts = [command.text for command in commands]
    setup = []
    makes_demo = any(text.startswith("make demo") for text in texts)
    reads_demo = any("runs/demo" in text or ("--study demo" in text and "--storage" not in text) for text in texts)
    if reads_demo and not makes_demo:
        setup.append(DEMO)
    makes_set = any("polyp.data.synthetic" in text for text in texts)
    if any("data/synthetic" in text for text in texts) and not makes_set and not makes_demo:
        setup.append(SYNTHETIC_SET)
    return setup


def test_readme_lists_the_commands_this_test_runs():
    commands = [command for document in DOCUMENTS for command in runnable_commands(document)]
    texts = "\n".join(c.text for c in commands)
    for expected in ("make demo", "polyp.data.synthetic", "polyp.train", "polyp.predict", "search.run",
                     "polyp.serve", "curl", "search.analyze", "search.export", "search.dashboard", "search.replay",
                     "polyp.bench", "from_pretrained", "search.refit"):
        assert expected in texts
    assert not any("kvasir" in c.text or "db-host" in c.text for c in commands)
    assert readme_commands(README.read_text())[0].text == "make demo"  # the set-up section comes first


def test_setup_commands_give_a_document_what_it_reads():
    reads_demo = [Command("bash", "python -m search.analyze --study demo"), Command("bash", "ls data/synthetic")]
    makes_its_own = [Command("bash", "make demo"), Command("bash", "python -m search.analyze --study demo")]
    own_storage = [Command("bash", "python -m search.run --study demo --storage sqlite:///x/s.db")]

    assert setup_commands(reads_demo) == [DEMO, SYNTHETIC_SET]
    assert setup_commands(makes_its_own) == []
    assert setup_commands(own_storage) == []


# The README's commands that the default run leaves to the slow walk-through (`make test-all`) to keep it fast:
# each is also run by a fast test of its own (tests/test_refit.py, test_replay.py, test_export.py, test_analyze.py).
SLOW_ONLY = ("search.refit ", "demo.refit", "exported/demo-ensemble", "--retrain", "--gradcam --run-dir",
             "search.replay --csv hyperparameters.csv --study grid --data synthetic",
             "data/centre-b",  # the next-hospital example: test_cross_centre.py trains on two sets and an external one
             "--max-latency-ms", "--sequence --out video/")  # test_export.py, test_video.py
SLOW_DOCS = ("auto.md", "benchmarking.md", "search-options.md", "next-hospital.md", "training.md", "imagenet-offline.md")
# search.auto runs for minutes (its fast tests: test_auto.py), timing runs, every option, real searches with validation sets (their fast tests: test_cross_centre*.py), one
# training each with deep supervision and with the offline ImageNet Lite0 weights (test_deep_supervision.py and
# test_offline_weights.py train both): in the slow run only


def test_readme_commands_run_as_written_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    walk(README, tmp_path, monkeypatch, leave_out=SLOW_ONLY)


@pytest.mark.slow
def test_every_readme_command_runs_as_written_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    walk(README, tmp_path, monkeypatch)


def test_the_default_walk_leaves_out_only_commands_it_names():
    left_out = [c.text for c in runnable_commands(README) if any(marker in c.text for marker in SLOW_ONLY)]

    assert left_out and len(left_out) < len(runnable_commands(README)) // 2
    assert not any(c.startswith(("make demo", ".venv/bin/python -m search.run", ".venv/bin/python -m search.export "
                                 "--study demo --out")) for c in left_out)


@pytest.mark.parametrize("document", [pytest.param(path, marks=pytest.mark.slow) if path.name in SLOW_DOCS else path
                                      for path in DOCS], ids=lambda path: path.name)
def test_docs_commands_run_as_written_in_order(document: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    if not runnable_commands(document):
        pytest.skip(f"docs/{document.name}: every command needs a host, data or set-up from outside")
    walk(document, tmp_path, monkeypatch)


def walk(document: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, leave_out: tuple[str, ...] = ()) -> None:
    """Runs the document's runnable commands in order in a fresh folder (after its set-up commands), but those
    containing one of `leave_out`."""
    monkeypatch.setenv("POLYP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    folder = tmp_path / "checkout"
    folder.mkdir()
    rows = (ROOT / "hyperparameters.csv").read_text().splitlines(keepends=True)[:1 + CSV_ROWS]
    (folder / "hyperparameters.csv").write_text("".join(rows))  # the documents run in the repository's root
    commands = [c for c in runnable_commands(document) if not any(marker in c.text for marker in leave_out)]
    for words in setup_commands(commands):
        done = subprocess.run([sys.executable, *words], cwd=folder, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"set-up {shlex.join(words)}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    server, port = None, free_port()
    try:
        for command in commands:
            if command.language == "python":
                _stop(server)
                server = None
                done = subprocess.run([sys.executable, "-c", command.text], cwd=folder, capture_output=True,
                                      text=True, timeout=300)
                assert done.returncode == 0, f"{document.name}: {command.text}\n{done.stdout}\n{done.stderr}"
                continue
            words = as_run_here(shlex.split(command.text), port)
            if words[0] != "curl":
                _stop(server)
                server = None
            if any(name in words for name in SERVERS):
                server, printed = _start_server(words, folder)
                assert server.poll() is None, f"{document.name}: {command.text} ended:\n{printed}"
                if "search.dashboard" in words:
                    _stop(server)
                    server = None
                continue
            started = time.monotonic()
            done = subprocess.run(words + (["--fail", "--silent", "--show-error"] if words[0] == "curl" else []),
                                  cwd=folder, capture_output=True, text=True, timeout=600)
            print(f"{time.monotonic() - started:6.1f} s  {command.text}")  # shown with -rP: where the walk's time goes
            assert done.returncode == 0, (f"{document.name}: {command.text}\n{done.stdout[-3000:]}\n"
                                          f"{done.stderr[-3000:]}")
    finally:
        _stop(server)
