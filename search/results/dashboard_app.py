"""The optuna-dashboard WSGI app of `search.dashboard`: a threading server, quiet request log, and long trial
values wrapped on the page."""

from __future__ import annotations

import socketserver
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

import optuna
import optuna_dashboard


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
