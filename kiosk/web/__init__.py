"""The teacher page: ``create_app(kiosk)`` builds the Flask app (pages + JSON API + live events).

Serve it with a production WSGI server whose threads exceed ``settings.sse_max_streams`` (waitress,
``threads=settings.web_threads``); see docs/api.md for every endpoint.

Example::

    app = create_app(kiosk)
    waitress.serve(app, host=settings.host, port=settings.port, threads=settings.web_threads)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from flask import Flask, request

from kiosk.web import errors
from kiosk.web.security import InMemoryRequest, LoginLimiter, SessionStore, StreamGate, add_security_headers

SSE_HEARTBEAT_SECONDS = 15.0


class WebState:
    """Everything the blueprints share, kept on ``app.extensions["kiosk"]`` (no module globals)."""

    def __init__(self, kiosk: Any, monotonic: Callable[[], float]):
        settings = kiosk.settings
        self.kiosk = kiosk
        self.sessions = SessionStore(monotonic)
        self.limiter = LoginLimiter(settings.login_attempts_per_minute, 60.0, monotonic)
        self.streams = StreamGate(settings.sse_max_streams)
        self.heartbeat = SSE_HEARTBEAT_SECONDS
        self.tls = bool(settings.tls_cert)


def create_app(kiosk: Any, *, testing: bool = False, monotonic: Callable[[], float] = time.monotonic) -> Flask:
    """The Flask app for ``kiosk`` (a :class:`kiosk.app.Kiosk`); ``monotonic`` drives sessions and limits."""
    from kiosk.web import api, enroll, live, pages

    app = Flask(__name__)
    app.request_class = InMemoryRequest
    app.config.update(
        TESTING=testing,                              # no SECRET_KEY: Flask's signed session is not used
        MAX_CONTENT_LENGTH=int(kiosk.settings.max_upload_mb * 1_000_000),
        MAX_FORM_MEMORY_SIZE=int(kiosk.settings.max_upload_mb * 1_000_000),
    )
    app.json.sort_keys = False                        # keep the documented field order
    state = WebState(kiosk, monotonic)
    app.extensions["kiosk"] = state
    for blueprint in (api.bp, enroll.bp, live.bp, pages.bp):
        app.register_blueprint(blueprint)
    errors.register(app)

    @app.after_request
    def _headers(response):
        api_path = request.path.startswith("/api/") or request.path == "/healthz"
        return add_security_headers(response, secure=state.tls or request.is_secure, api=api_path)

    return app


__all__ = ["create_app"]
