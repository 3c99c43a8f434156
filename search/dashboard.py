"""optuna-dashboard on a study's storage with the run folder's artifact store, so each trial's page shows
its note (metrics, settings, prediction sheet and loss curve inline) and its files.

Example:
    python -m search.dashboard --study demo --run-dir runs            # http://127.0.0.1:8080/dashboard/
    python -m search.dashboard --storage postgresql://postgres@db-host/optuna --run-dir runs --port 8081
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from wsgiref.simple_server import make_server

import optuna

from search.cli import (
    DEFAULT_RUN_DIR,
    USER_ERRORS,
    CommandLineError,
    add_artifacts_option,
    add_run_dir_option,
    fail,
    study_request,
)
from search.engine.artifacts import open_artifact_store
from search.engine.session import open_session
from search.engine.storage import default_storage_url, open_storage, safe_url
from search.results.dashboard_app import QuietHandler, ThreadingWSGIServer, dashboard_app, study_url


def open_target(args: argparse.Namespace) -> tuple[optuna.storages.BaseStorage, str | None, str, object, str]:
    """The storage to show, the study's name (if --study), the storage URL, the artifact store and where it is."""
    if args.study:
        session = open_session(study_request(args, "search.dashboard"), create=False)
        return (session.storage, session.spec.name, session.storage_url, session.artifacts,
                args.artifacts or str(session.run_dir / "artifacts"))
    if getattr(args, "old_out", None) is not None:
        args.run_dir = study_request(args, "search.dashboard").run_dir  # the note, and --out's folder
    run_dir = Path(args.run_dir or DEFAULT_RUN_DIR)
    url = args.storage or default_storage_url(run_dir)
    if not args.storage and not (run_dir / "optuna.db").is_file():
        raise CommandLineError(f"no study database in {run_dir}/ (optuna.db); run search.run first, "
                               f"or pass --run-dir RUN_FOLDER or --storage URL")
    return open_storage(url), None, url, open_artifact_store(run_dir, args.artifacts), (
        args.artifacts or str(run_dir / "artifacts"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Browse studies, trial notes and artifacts in optuna-dashboard.")
    parser.add_argument("--study", help="study to open first (name or .toml path); default: the study list")
    parser.add_argument("--storage", help="SQLAlchemy URL (default: SQLite in the run folder)")
    add_artifacts_option(parser)
    add_run_dir_option(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        storage, study_name, url, artifacts, artifacts_at = open_target(args)
        app = dashboard_app(storage, artifacts)
    except USER_ERRORS as error:
        return fail(str(error))
    try:
        server = make_server(args.host, args.port, app, server_class=ThreadingWSGIServer, handler_class=QuietHandler)
    except OSError as error:
        return fail(f"cannot listen on {args.host}:{args.port} ({error.strerror or error}); try another --port")
    base = f"http://{args.host}:{server.server_port}"
    print(f"optuna-dashboard of {safe_url(url)} with artifacts from {artifacts_at}")
    print(f"open {study_url(base, storage, study_name)}  (Ctrl+C stops it)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
