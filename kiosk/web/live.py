"""Live updates (Server-Sent Events), status, health and the OpenAPI description."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from importlib import resources
from typing import Any

from flask import Blueprint, Response, jsonify, request

from kiosk.events import Event
from kiosk.web.auth import login_required, state
from kiosk.web.errors import error
from kiosk.web.security import SESSION_COOKIE

bp = Blueprint("live", __name__)

QUEUE_SIZE = 100


def _frame(name: str, data: object) -> str:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _visible(event: Event, kiosk: Any) -> Event:
    """``event`` as this page may see it: an ``outbox`` event keeps only its teacher's refused marks."""
    if event.name != "outbox":
        return event
    return dataclasses.replace(event, data=kiosk.outbox_view(event.data))


@bp.get("/api/events")
@login_required
def events():
    st = state()
    if not st.streams.acquire():
        return error(503, f"Too many live pages are open (at most {st.streams.cap}): close one and reload.")
    sid = request.cookies.get(SESSION_COOKIE)
    subscription = st.kiosk.events.subscribe(maxsize=QUEUE_SIZE)
    released = []

    def release() -> None:
        if not released:
            released.append(True)
            subscription.close()
            st.streams.release()

    def logged_in() -> bool:
        return st.sessions.get(sid, teacher=st.kiosk.owner, epoch=st.kiosk.epoch) is not None

    def stream() -> Iterator[str]:
        try:
            yield "retry: 3000\n\n"
            yield _frame("snapshot", {"session": st.kiosk.session(), "status": st.kiosk.status()})
            while True:
                event = subscription.get(timeout=st.heartbeat)
                if event is None and subscription.closed:
                    return
                if not logged_in():          # before every frame: a logged-out page gets nothing more
                    yield _frame("logout", {})
                    return
                yield ": heartbeat\n\n" if event is None else _visible(event, st.kiosk).sse()
        finally:
            release()

    response = Response(stream(), mimetype="text/event-stream")
    response.call_on_close(release)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Accel-Buffering"] = "no"
    return response


@bp.get("/api/status")
@login_required
def status():
    return jsonify(state().kiosk.status())


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


@bp.get("/api/openapi.json")
def openapi():
    text = resources.files("kiosk.web").joinpath("openapi.json").read_text(encoding="utf-8")
    return Response(text, mimetype="application/json")
