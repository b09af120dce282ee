"""Errors as JSON ``{"error": "<plain sentence>"}`` with a fitting status code (see docs/api.md)."""

from __future__ import annotations

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from kiosk.app import PhotosRefused
from kiosk.errors import (
    CameraError,
    ClassAlreadyRunning,
    ClassInProgress,
    EnrollmentRefused,
    KioskError,
    LoginFailed,
    LoginRequired,
    MalformedResponse,
    ModelLoadError,
    NoClassRunning,
    NotOnRoster,
    UpstreamRejected,
    UpstreamUnavailable,
)

# exception class -> (status, message override or None to use the exception's own sentence)
STATUS: list[tuple[type[KioskError], int, str | None]] = [
    (LoginFailed, 401, "Wrong username or password."),
    (LoginRequired, 401, "Your login has expired: log in again."),
    (ClassInProgress, 409, None),
    (ClassAlreadyRunning, 409, None),
    (NoClassRunning, 409, None),
    (NotOnRoster, 404, "That student is not on this class's roster."),
    (EnrollmentRefused, 422, None),
    (CameraError, 503, None),
    (ModelLoadError, 503, "The recognition models are not installed on this kiosk."),
    (UpstreamUnavailable, 503, "The university API is not answering: try again in a minute."),
    (UpstreamRejected, 502, "The university API refused the request."),
    (MalformedResponse, 502, "The university API gave an answer the kiosk does not understand."),
]

HTTP_MESSAGES = {
    400: "The request is not valid.",
    401: "Log in first.",
    403: "This request is not allowed.",
    404: "There is nothing here.",
    405: "This method is not allowed here.",
    413: "The upload is too large.",
    415: "The upload is not an image.",
    500: "Something went wrong inside the kiosk.",
}


def error(status: int, message: str, **extra):
    """A JSON error answer; ``extra`` adds fields (e.g. ``teacher`` for a take-over question)."""
    response = jsonify({"error": message, **extra})
    response.status_code = status
    return response


def _kiosk_error(exc: KioskError):
    for cls, status, message in STATUS:
        if isinstance(exc, cls):
            extra = {}
            if isinstance(exc, ClassInProgress):
                extra = {"teacher": exc.teacher, "takeover": True}
            if isinstance(exc, PhotosRefused):
                extra = {"photos": [{"index": r.index, "reason": r.reason} for r in exc.refusals]}
            return error(status, message or str(exc), **extra)
    print(f"kiosk web: unexpected {type(exc).__name__}", flush=True)
    return error(500, HTTP_MESSAGES[500])


def _http_error(exc: HTTPException):
    if not request.path.startswith("/api/") and request.path != "/healthz":
        return exc
    status = exc.code or 500
    message = HTTP_MESSAGES.get(status, exc.name + ".")
    if status == 413:
        limit = request.max_content_length
        if limit:
            message = f"The upload is too large: at most {limit / 1_000_000:g} MB."
    return error(status, message)


def _unexpected(exc: Exception):
    """A bug: a plain 500, and only the exception's type on stderr (its text may hold names or IDs)."""
    print(f"kiosk web: unexpected {type(exc).__name__} on {request.method} {request.path}", flush=True)
    return error(500, HTTP_MESSAGES[500])


def register(app: Flask) -> None:
    """Install the JSON error handlers on ``app``."""
    app.register_error_handler(KioskError, _kiosk_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
