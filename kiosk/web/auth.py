"""Who is calling: the session cookie -> the kiosk's teacher, and the CSRF check on state changes."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from flask import current_app, g, request

from kiosk.web.errors import error
from kiosk.web.security import SESSION_COOKIE, WebSession, csrf_ok

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def state() -> Any:
    """The app's :class:`kiosk.web.WebState`."""
    return current_app.extensions["kiosk"]


def current_session() -> WebSession | None:
    """The caller's page session if it belongs to the teacher logged in on the kiosk now, else None."""
    st = state()
    return st.sessions.get(request.cookies.get(SESSION_COOKIE), teacher=st.kiosk.owner, epoch=st.kiosk.epoch)


def same_origin() -> bool:
    """False when the browser says the request comes from another site (``Origin`` not this host)."""
    origin = request.headers.get("Origin")
    if not origin or request.method in SAFE_METHODS:
        return True
    return urlsplit(origin).netloc == request.host


def login_required(view: Callable) -> Callable:
    """401 without a valid session; 403 when a state-changing call lacks the right X-CSRF-Token or comes
    from another origin."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        session = current_session()
        if session is None:
            return error(401, "Log in first.")
        if request.method not in SAFE_METHODS:
            if not same_origin():
                return error(403, "Requests from another site are not allowed.")
            if not csrf_ok(session, request.headers.get("X-CSRF-Token")):
                return error(403, "The page's security token is missing or wrong: reload the page.")
        g.web_session = session
        return view(*args, **kwargs)

    return wrapper


def set_session_cookie(response, sid: str) -> None:
    """The session cookie: HttpOnly, SameSite=Strict, Secure when served over TLS, no Max-Age."""
    secure = state().tls or request.is_secure
    response.set_cookie(SESSION_COOKIE, sid, httponly=True, samesite="Strict", secure=secure, path="/")


def clear_session_cookie(response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="Strict")
