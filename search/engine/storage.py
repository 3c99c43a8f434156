"""Study storages: SQLite in the run folder by default, any SQLAlchemy URL (PostgreSQL for many workers).

Every RDB storage gets Optuna's heartbeat, so a trial whose worker died is marked failed and retried once
(the retry inherits its params), and a study-wide lock that makes "start a trial only while the study
holds fewer than N finished or running trials" one atomic step across workers.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import optuna
import sqlalchemy
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._heartbeat import BaseHeartbeat  # the interface RDBStorage and its cache share
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from polyp.errors import PolypError

SQLITE_BUSY_TIMEOUT_S = 120  # a second SQLite worker waits this long for a write lock instead of failing
CONNECT_TIMEOUT_S = 10  # an unreachable PostgreSQL server is reported after this long instead of hanging
CREATION_LOCK_KEY = 0x706F6C79705F6462  # pg advisory lock held while the tables are created ("polyp_db")


class StorageError(PolypError):
    """A storage URL that is malformed or a database that cannot be reached."""


def default_storage_url(run_dir: Path) -> str:
    """The SQLite file of a run folder."""
    return f"sqlite:///{(run_dir / 'optuna.db').resolve()}"


def parse_url(url: str) -> URL:
    """Parses a SQLAlchemy URL, refusing malformed ones with a clear message."""
    try:
        parsed = make_url(url)
        parsed.get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError) as error:
        hint = "; write postgresql://, not postgres://" if url.startswith("postgres://") else ""
        raise StorageError(
            f"storage URL {_masked(url)!r} is malformed or names an unknown database ({error}){hint}; "
            f"use e.g. sqlite:///runs/optuna.db or postgresql://user@host:5432/dbname"
        ) from None
    return parsed


def _masked(url: str) -> str:
    """The URL text with whatever stands between "user:" and "@" shown as *** (for URLs that do not parse)."""
    return re.sub(r"(//[^/:@]*:)[^/]*@", r"\1***@", url)


def safe_url(url: str) -> str:
    """The URL with any password shown as ***, for messages, tables and reports."""
    with contextlib.suppress(StorageError):
        return parse_url(url).render_as_string(hide_password=True)
    return _masked(url)


def command_url(url: str) -> str:
    """The URL with any password left out, for a command the user may copy (see `password_hint`)."""
    with contextlib.suppress(StorageError):
        parsed = parse_url(url)
        if parsed.password is not None:
            return URL.create(parsed.drivername, parsed.username, None, parsed.host, parsed.port, parsed.database,
                              parsed.query).render_as_string(hide_password=False)
    return url


def password_hint(url: str) -> str:
    """How to give the password to a command printed with `command_url`; "" when the URL has none."""
    with contextlib.suppress(StorageError):
        if parse_url(url).password is not None:
            return ("the password is left out of these commands: set PGPASSWORD before running them, "
                    "or put it in ~/.pgpass (host:port:database:user:password, mode 600)")
    return ""


@contextlib.contextmanager
def _creation_lock(parsed: URL, connect_args: dict) -> Iterator[None]:
    """Held while Optuna creates its tables: workers started at once on a fresh database would race
    (duplicate type, table or alembic row errors)."""
    database = parsed.database or ""
    if parsed.get_backend_name() == "postgresql":
        engine = sqlalchemy.create_engine(parsed, poolclass=sqlalchemy.pool.NullPool, connect_args=connect_args)
        try:
            with engine.connect() as connection:  # closing the connection releases the session lock
                connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": CREATION_LOCK_KEY})
                yield
        finally:
            engine.dispose()
    elif parsed.get_backend_name() == "sqlite" and database not in ("", ":memory:"):
        with open(Path(database).with_suffix(".init.lock"), "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield
    else:
        yield


def first_heartbeat(trial: optuna.trial.Trial) -> None:
    """Records the trial's heartbeat now, before it trains. Optuna's heartbeat thread beats first when it gets
    to run; a worker that dies before then (on a busy machine, within milliseconds of starting its trial)
    leaves a RUNNING trial with no heartbeat, which no other worker ever takes for dead and retries."""
    storage = trial.storage  # an RDBStorage, or Optuna's cache in front of one: both beat
    if isinstance(storage, BaseHeartbeat) and storage.get_heartbeat_interval():
        storage.record_heartbeat(trial._trial_id)


def open_storage(url: str, heartbeat_s: int = 15) -> RDBStorage:
    """Opens (and creates the tables of) the storage at `url`, with heartbeat and one retry per dead trial.

    Args:
        url: a SQLAlchemy URL.
        heartbeat_s: seconds between a running trial's heartbeats; a trial silent for 2x this is stale.

    Raises:
        StorageError: malformed URL or unreachable database.
    """
    parsed = parse_url(url)
    engine_kwargs: dict = {"pool_pre_ping": True}
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:":
            folder = Path(database).parent
            if not folder.is_dir():
                raise StorageError(f"{safe_url(url)}: folder {folder} does not exist")
        engine_kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S}
    elif parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
        engine_kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
    try:
        with _creation_lock(parsed, engine_kwargs.get("connect_args", {})), warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return RDBStorage(
                parsed.render_as_string(hide_password=False), engine_kwargs=engine_kwargs,
                heartbeat_interval=heartbeat_s, grace_period=2 * heartbeat_s,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1),
            )
    except sqlalchemy.exc.OperationalError as error:
        reason = str(error.orig).strip().splitlines()[0] if error.orig else str(error)
        raise StorageError(f"cannot reach the database at {safe_url(url)}: {reason}") from None
    except (sqlalchemy.exc.SQLAlchemyError, ImportError) as error:
        raise StorageError(f"cannot open storage {safe_url(url)}: {error}") from None


class StudyLock:
    """A lock shared by every worker of one study on one storage; `release` may be called more than once.

    PostgreSQL: a session advisory lock. SQLite: an flock on a file beside the database. Others: none
    (Optuna's own transactions still keep the storage consistent).
    """

    def __init__(self, storage: RDBStorage, study_name: str):
        self.engine = storage.engine
        self.url = self.engine.url
        self.key = int.from_bytes(hashlib.sha256(study_name.encode()).digest()[:8], "big", signed=True)
        self._held: object | None = None

    def acquire(self) -> StudyLock:
        backend = self.url.get_backend_name()
        if backend == "postgresql":
            connection = self.engine.connect()
            connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": self.key})
            self._held = connection
        elif backend == "sqlite" and self.url.database not in (None, "", ":memory:"):
            handle = open(Path(self.url.database).with_suffix(f".{self.key & 0xFFFFFFFF:08x}.lock"), "a")
            fcntl.flock(handle, fcntl.LOCK_EX)
            self._held = handle
        else:
            self._held = True
        return self

    def release(self) -> None:
        held, self._held = self._held, None
        if isinstance(held, sqlalchemy.engine.Connection):
            held.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": self.key})
            held.commit()
            held.close()
        elif held is not None and hasattr(held, "fileno"):
            fcntl.flock(held, fcntl.LOCK_UN)
            held.close()

    def __enter__(self) -> StudyLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def retried_trial_number(trial: optuna.trial.FrozenTrial) -> int | None:
    """The number of the trial this one repeats after its worker died, if it is a retry."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RetryHeartbeatStaleTrialCallback.retried_trial_number(trial)
