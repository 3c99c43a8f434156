"""No command prints or writes the database password of a `--storage` URL.

Every search command runs against a PostgreSQL URL that carries a password (the test server trusts
local connections, so any password is accepted); then all they printed, every file under the test's
folder and every row of the study's tables are searched for it.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import sqlalchemy
from pg import postgres_url  # noqa: F401
from search_fixtures import TINY_STUDY, fast_pictures, search_cache, write_study  # noqa: F401
from sqlalchemy.engine import make_url

from search.analyze import main as analyze_main
from search.engine.storage import safe_url
from search.export import main as export_main
from search.replay import main as replay_main
from search.run import main as run_main

pytestmark = [pytest.mark.postgres, pytest.mark.usefixtures("search_cache", "fast_pictures")]

FAKE = ["--trainer", "search.testing:fake_fit", "--data", "synthetic"]


def _with_password(url: str, password: str) -> str:
    return make_url(url).set(password=password).render_as_string(hide_password=False)


def _stored_text(url: str) -> str:
    """Every row of every table of the study database, as text."""
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as connection:
            tables = sqlalchemy.inspect(connection).get_table_names()
            return "\n".join(str(row) for table in tables
                             for row in connection.execute(sqlalchemy.text(f'SELECT * FROM "{table}"')))
    finally:
        engine.dispose()


def _dashboard_output(argv: list[str]) -> str:
    """What `search.dashboard` prints before it serves; the server is stopped once it says where to open."""
    server = subprocess.Popen([sys.executable, "-m", "search.dashboard", *argv, "--port", "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        for line in server.stdout:
            lines.append(line)
            if line.startswith("open "):
                break
    finally:
        server.terminate()
        lines.append(server.communicate(timeout=30)[0])
    return "".join(lines)


@pytest.mark.parametrize("url", ["postgres://alice:s3cret-pw@db/optuna", "postgresql://alice:s3cret-pw@db:port/optuna"])
def test_a_malformed_url_is_refused_without_its_password(url: str, tmp_path: Path, capsys):
    assert run_main(["--study", str(write_study(tmp_path, TINY_STUDY)), "--storage", url, "--run-dir", str(tmp_path),
                     "--n-trials", "1", *FAKE]) == 2
    errors = capsys.readouterr().err
    assert "malformed" in errors and "alice:***@" in errors and "s3cret-pw" not in errors
    assert safe_url(url).count("***") == 1 and "s3cret-pw" not in safe_url(url)


def test_no_command_prints_or_writes_the_password(tmp_path: Path, postgres_url: str, capsys):  # noqa: F811
    password = f"pw-{uuid.uuid4().hex}"
    url = _with_password(postgres_url, password)
    runs, export = tmp_path / "runs", tmp_path / "exported"
    study = write_study(tmp_path, TINY_STUDY)
    replayed = write_study(tmp_path, {**TINY_STUDY, "study": {"name": "tiny-replay"}}, "replay.toml")
    (tmp_path / "rows.csv").write_text("lr,notes\n0.001,first\n0.003,second\n")
    where = ["--storage", url, "--run-dir", str(runs)]

    assert run_main(["--study", str(study), *where, "--n-trials", "3", *FAKE]) == 0
    assert replay_main(["--csv", str(tmp_path / "rows.csv"), "--study", str(replayed), *where, *FAKE]) == 0
    assert analyze_main(["--study", str(study), *where, "--top", "1"]) == 0
    assert export_main(["--study", str(study), "--storage", url, "--run-dir", str(runs), "--out", str(export)]) == 0
    other = write_study(tmp_path, {**TINY_STUDY, "study": {"name": "not-there"}}, "other.toml")
    assert analyze_main(["--study", str(other), *where]) == 2  # "no study 'not-there' in <url>"
    unreachable = make_url(url).set(port=1).render_as_string(hide_password=False)
    assert run_main(["--study", str(study), "--storage", unreachable, "--run-dir", str(runs), "--n-trials", "1",
                     *FAKE]) == 2
    printed = capsys.readouterr()
    printed_text = printed.out + printed.err + _dashboard_output(["--study", str(study), *where])

    assert "next: (the password is left out of these commands: set PGPASSWORD" in printed_text
    assert "no study 'not-there'" in printed_text and "cannot reach the database" in printed_text
    assert password not in printed_text
    written = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert any(path.name == "training.json" for path in written) and any(path.name == "index.html" for path in written)
    assert [path for path in written if password.encode() in path.read_bytes()] == []
    stored = _stored_text(url)
    assert "tiny-replay" in stored and "csv_row" in stored  # the tables were read
    assert password not in stored  # user attributes, dashboard notes, system attributes
