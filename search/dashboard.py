"""optuna-dashboard on a study's storage with the run folder's artifact store, so each trial's page shows
its note (metrics, settings, prediction sheet and loss curve inline) and its files.

Example:
    python -m search.dashboard --study demo --out runs            # http://127.0.0.1:8080/dashboard/
    python -m search.dashboard --storage postgresql://postgres@db-host/optuna --out runs --port 8081
"""

from __future__ import annotations

import argparse
import socketserver
import sys
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import optuna
import optuna_dashboard

from search.artifacts import open_artifact_store
from search.options import DEFAULT_RUN_DIR, USER_ERRORS, CommandLineError, add_artifacts_option, fail
from search.session import open_session
from search.storage import default_storage_url, open_storage, safe_url


class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    """A WSGI server that answers the dashboard's parallel requests (page, API, artifacts) at once."""

    daemon_threads = True


class QuietHandler(WSGIRequestHandler):
    """No access-log line per request."""

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's signature
        pass


# Our trials keep long JSON user attrs (history, config); the dashboard shows each on one unbreakable line,
# which stretches the trial page, notes included, to thousands of pixels. Let them wrap.
WRAP_STYLE = b"<style>main p { white-space: normal !important; overflow-wrap: anywhere; }</style>"


def wrap_long_values(app):
    """WSGI middleware adding WRAP_STYLE to the dashboard's HTML page; everything else passes through."""

    def wrapped(environ, start_response):
        captured = {}

        def capture(status, headers, exc_info=None):
            captured.update(status=status, headers=headers, exc_info=exc_info)

        body = app(environ, capture)
        if not captured:  # a generator app calls start_response when its first item is taken
            body = list(body)
        headers = captured["headers"]
        is_html = any(k.lower() == "content-type" and v.startswith("text/html") for k, v in headers)
        if not is_html:
            start_response(captured["status"], headers, captured["exc_info"])
            return body
        try:
            page = b"".join(body).replace(b"</head>", WRAP_STYLE + b"</head>", 1)
        finally:
            getattr(body, "close", lambda: None)()
        headers = [(k, v) for k, v in headers if k.lower() not in ("content-length", "etag", "last-modified")]
        start_response(captured["status"], [*headers, ("Content-Length", str(len(page)))], captured["exc_info"])
        return [page]

    return wrapped


def dashboard_app(storage: optuna.storages.BaseStorage, artifacts):
    """The optuna-dashboard WSGI app over `storage`, serving the trials' files from the artifact store."""
    return wrap_long_values(optuna_dashboard.wsgi(storage, artifact_store=artifacts))


def study_url(base: str, storage: optuna.storages.BaseStorage, study_name: str | None) -> str:
    """The dashboard page of the study (or the study list without one)."""
    if study_name is None:
        return f"{base}/dashboard/"
    return f"{base}/dashboard/studies/{storage.get_study_id_from_name(study_name)}"


def open_target(args: argparse.Namespace) -> tuple[optuna.storages.BaseStorage, str | None, str, object]:
    """The storage to show, the study's name (if --study), the storage URL and the artifact store."""
    if args.study:
        session = open_session(args, create=False)
        return session.storage, session.spec.name, session.storage_url, session.artifacts
    url = args.storage or default_storage_url(Path(args.run_dir))
    if not args.storage and not (Path(args.run_dir) / "optuna.db").is_file():
        raise CommandLineError(f"no study database in {args.run_dir}/ (optuna.db); run search.run first, "
                         f"or pass --out RUN_FOLDER or --storage URL")
    return open_storage(url), None, url, open_artifact_store(Path(args.run_dir), args.artifacts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Browse studies, trial notes and artifacts in optuna-dashboard.")
    parser.add_argument("--study", help="study to open first (name or .toml path); default: the study list")
    parser.add_argument("--storage", help="SQLAlchemy URL (default: SQLite in --out)")
    add_artifacts_option(parser)
    parser.add_argument("--out", "--run-dir", dest="run_dir", default=DEFAULT_RUN_DIR,
                        help=f"run folder with optuna.db and artifacts/ (default: {DEFAULT_RUN_DIR}/)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        storage, study_name, url, artifacts = open_target(args)
        app = dashboard_app(storage, artifacts)
    except USER_ERRORS as error:
        return fail(str(error))
    try:
        server = make_server(args.host, args.port, app, server_class=ThreadingWSGIServer, handler_class=QuietHandler)
    except OSError as error:
        return fail(f"cannot listen on {args.host}:{args.port} ({error.strerror or error}); try another --port")
    base = f"http://{args.host}:{server.server_port}"
    print(f"optuna-dashboard of {safe_url(url)} with artifacts from {args.artifacts or Path(args.run_dir) / 'artifacts'}")
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
