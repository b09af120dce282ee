"""Server-rendered page shells (login, start a class, the live class); the data comes from /api/ via JS."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, url_for

from kiosk.web.auth import current_session, state

bp = Blueprint("pages", __name__)


def _where() -> str:
    """The page this caller belongs on now: login, the class picker, or the running class."""
    if current_session() is None:
        return "pages.login"
    return "pages.live" if state().kiosk.session() is not None else "pages.start"


def _page(name: str, template: str):
    target = _where()
    if target != name:
        return redirect(url_for(target))
    response = render_template(template, settings=state().kiosk.settings)
    return response, 200, {"Cache-Control": "no-store"}


@bp.get("/")
def index():
    return redirect(url_for(_where()))


@bp.get("/login")
def login():
    return _page("pages.login", "pages/login.html")


@bp.get("/start")
def start():
    return _page("pages.start", "pages/start.html")


@bp.get("/class")
def live():
    return _page("pages.live", "pages/class.html")
