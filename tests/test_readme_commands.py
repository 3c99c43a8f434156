"""The README's commands run as written, in order, on a fresh run folder.

Every command of the README's ```bash and ```python blocks that needs nothing from outside (no Kvasir-SEG
download, no database host, no shared folder) runs in a fresh folder, in the README's order, with smaller
numbers (one epoch, two trials, 64 px, the first rows of the spreadsheet, a short benchmark) so that the
whole walk-through takes about two minutes. Servers
(`polyp.serve`, `search.dashboard`) run until they print where to open them; the `curl` lines under
`polyp.serve` are sent to it while it runs.
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
EXTERNAL = ("~/data", "db-host", "/mnt/", "ssh ", "createdb", "make test")  # data, hosts or set-up from outside
SERVERS = ("polyp.serve", "search.dashboard")
SMALLER = {"--epochs": lambda value: "1", "--n-trials": lambda value: "2", "--count": lambda value: "16",
           "--image-size": lambda value: str(min(int(value), 64)), "--size": lambda value: str(min(int(value), 64))}
DEMO = ["-m", "search.demo", "--out", "runs", "--n-trials", "4", "--epochs", "1"]  # `make demo`; trial 3 is exported
QUICKER = {"polyp.bench": ["--steps", "1", "--rounds", "1", "--warmup", "1", "--peak-size", "256", "--predict-size", "64",
                           "--wait-steps", "2"]}
CSV_ROWS = 4  # rows of the shipped hyperparameters.csv that the replay commands train
SERVER_START_S = 120


@dataclass(frozen=True)
class Command:
    """One command of the README: its language ("bash" or "python") and its text."""

    language: str
    text: str


def readme_commands(text: str) -> list[Command]:
    """The README's bash commands (continuation lines joined, comments dropped) and python blocks, in order."""
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


def test_readme_lists_the_commands_this_test_runs():
    commands = [c for c in readme_commands(README.read_text()) if runnable(c)]
    texts = "\n".join(c.text for c in commands)
    for expected in ("make demo", "polyp.data.synthetic", "polyp.train", "polyp.predict", "search.run",
                     "polyp.serve", "curl", "search.analyze", "search.export", "search.dashboard", "search.replay",
                     "polyp.bench", "from_pretrained", "search.refit"):
        assert expected in texts
    assert not any("kvasir" in c.text or "db-host" in c.text for c in commands)


def test_readme_commands_run_as_written_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("POLYP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    folder = tmp_path / "checkout"
    folder.mkdir()
    rows = (ROOT / "hyperparameters.csv").read_text().splitlines(keepends=True)[:1 + CSV_ROWS]
    (folder / "hyperparameters.csv").write_text("".join(rows))  # the README runs in the repository's root
    server, port = None, free_port()
    try:
        for command in filter(runnable, readme_commands(README.read_text())):
            if command.language == "python":
                _stop(server)
                server = None
                done = subprocess.run([sys.executable, "-c", command.text], cwd=folder, capture_output=True,
                                      text=True, timeout=300)
                assert done.returncode == 0, f"{command.text}\n{done.stdout}\n{done.stderr}"
                continue
            words = as_run_here(shlex.split(command.text), port)
            if words[0] != "curl":
                _stop(server)
                server = None
            if any(name in words for name in SERVERS):
                server, printed = _start_server(words, folder)
                assert server.poll() is None, f"{command.text} ended:\n{printed}"
                if "search.dashboard" in words:
                    _stop(server)
                    server = None
                continue
            done = subprocess.run(words + (["--fail", "--silent", "--show-error"] if words[0] == "curl" else []),
                                  cwd=folder, capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, f"{command.text}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    finally:
        _stop(server)
