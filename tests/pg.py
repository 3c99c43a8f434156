"""PostgreSQL for tests: a fresh database per test on the server at 127.0.0.1:5432, dropped afterwards.

Tests that use it carry `@pytest.mark.postgres`. Where no server answers they skip with the reason, except
under CI (CI=true), where a missing server is an error. Set POLYP_TEST_POSTGRES to use another server
(a URL to a database the user may connect to and create databases from).

Use it from a test file with `from pg import postgres_url  # noqa: F401` (the fixture), or call
`fresh_database()` as a context manager.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy
from sqlalchemy.engine import make_url

ADMIN_URL = os.environ.get("POLYP_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def in_ci() -> bool:
    """Whether the tests run in CI, where the PostgreSQL tests must run."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _admin_engine() -> sqlalchemy.Engine:
    return sqlalchemy.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=sqlalchemy.pool.NullPool,
                                    connect_args={"connect_timeout": 3})


def server_problem() -> str | None:
    """None when the server answers, else why not."""
    try:
        with _admin_engine().connect() as connection:
            connection.execute(sqlalchemy.text("SELECT 1"))
    except Exception as error:  # any driver or network error means "no server here"
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        return f"no PostgreSQL server answers at {make_url(ADMIN_URL).render_as_string(hide_password=True)}: {reason}"
    return None


def require_server() -> None:
    """Skips the test when no server answers; fails it under CI=true."""
    problem = server_problem()
    if problem is None:
        return
    if in_ci():
        pytest.fail(f"{problem} (CI=true: the PostgreSQL tests must run)", pytrace=False)
    pytest.skip(problem)


@contextlib.contextmanager
def fresh_database(prefix: str = "polyp_test") -> Iterator[str]:
    """Creates an empty database `<prefix>_<random>`, yields its URL, and drops it (closing its sessions)."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    engine = _admin_engine()
    with engine.connect() as connection:
        connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """The URL of a fresh, empty PostgreSQL database for this test only."""
    require_server()
    with fresh_database() as url:
        yield url
