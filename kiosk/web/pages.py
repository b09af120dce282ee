"""Server-rendered page shells (login, start a class, the live class); the data comes from /api/ via JS."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, url_for

from kiosk.web.auth import current_session, state
from kiosk.web.security import SESSION_COOKIE

bp = Blueprint("pages", __name__)


def _where() -> str:
    """The page this caller belongs on now: login, the class picker, or the running class."""
    if current_session() is None:
        return "pages.login"
    return "pages.live" if state().kiosk.session() is not None else "pages.start"


def _redirect(target: str):
    """To ``target``; a browser still holding a session cookie that no longer counts is told at the login."""
    if target == "pages.login" and request.cookies.get(SESSION_COOKIE):
        return redirect(url_for(target, ended=1))
    return redirect(url_for(target))


def _page(name: str, template: str):
    target = _where()
    if target != name:
        return _redirect(target)
    response = render_template(template, settings=state().kiosk.settings)
    return response, 200, {"Cache-Control": "no-store"}


@bp.get("/")
def index():
    return _redirect(_where())


@bp.get("/login")
def login():
    if request.args.get("again") and current_session() is not None:
        # The university login expired under a running class: log in again without leaving it.
        return render_template("pages/login.html", settings=state().kiosk.settings), 200, {"Cache-Control": "no-store"}
    return _page("pages.login", "pages/login.html")


@bp.get("/start")
def start():
    return _page("pages.start", "pages/start.html")


@bp.get("/class")
def live():
    return _page("pages.live", "pages/class.html")
