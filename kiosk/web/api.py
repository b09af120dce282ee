"""The JSON API: login, the teacher's timetable, the running class and its marks (docs/api.md)."""

from __future__ import annotations

import dataclasses
from typing import Any

from flask import Blueprint, g, jsonify, request

from kiosk.errors import ClassInProgress
from kiosk.web.auth import (
    clear_session_cookie,
    current_session,
    login_required,
    same_origin,
    set_session_cookie,
    state,
)
from kiosk.web.errors import error
from kiosk.web.inputs import json_body, user_id_of
from kiosk.web.security import SESSION_COOKIE, csrf_ok

bp = Blueprint("api", __name__, url_prefix="/api")


def _me(username: str, csrf: str):
    return jsonify({"username": username, "csrfToken": csrf, "classRunning": state().kiosk.session() is not None})


@bp.post("/login")
def login():
    st = state()
    if not same_origin():
        return error(403, "Logging in from another site is not allowed.")
    data = json_body("username", "password")
    if not isinstance(data["username"], str) or not isinstance(data["password"], str):
        return error(400, "Username and password must be text.")
    who = request.remote_addr or "unknown"
    wait = st.limiter.begin(who)            # counted before the university is asked: parallel guesses too
    if wait is not None:
        response = error(429, f"Too many failed logins: try again in {wait} seconds.")
        response.headers["Retry-After"] = str(wait)
        return response
    try:
        name = st.kiosk.login(data["username"], data["password"], takeover=data.get("takeover") is True)
    except ClassInProgress:
        st.limiter.succeeded(who)           # the password was right
        raise
    st.limiter.succeeded(who)
    sid, session = st.sessions.create(name, st.kiosk.epoch)
    response = _me(name, session.csrf)
    set_session_cookie(response, sid)
    return response


@bp.get("/me")
@login_required
def me():
    return _me(g.web_session.username, g.web_session.csrf)


@bp.post("/logout")
def logout():
    session = current_session()
    response = jsonify({"loggedOut": True})
    if session is not None:
        if not (same_origin() and csrf_ok(session, request.headers.get("X-CSRF-Token"))):
            return error(403, "The page's security token is missing or wrong: reload the page.")
        state().kiosk.logout()
    state().sessions.drop(request.cookies.get(SESSION_COOKIE))
    clear_session_cookie(response)
    return response


@bp.get("/modules")
@login_required
def modules():
    return jsonify([{"id": m.id, "name": m.name, "code": m.code} for m in state().kiosk.modules()])


@bp.get("/modules/<module_id>/lessons")
@login_required
def lessons(module_id: str):
    if not module_id.isdigit() or len(module_id) > 9:
        return error(400, "moduleId must be a module's number.")
    teaching_type = request.args.get("teachingType", type=int)
    if teaching_type not in (1, 2):
        return error(400, "teachingType must be 1 (seminar) or 2 (workshop).")
    choice = state().kiosk.lessons(int(module_id), teaching_type)
    return jsonify({
        "slots": [_camel(dataclasses.asdict(s)) for s in choice.slots],
        "attClasses": [_camel(dataclasses.asdict(w)) for w in choice.weeks],
        "preselected": {"lessonGuid": choice.preselected_guid, "classId": choice.preselected_class_id},
    })


def _camel(d: dict[str, Any]) -> dict[str, Any]:
    def camel(key: str) -> str:
        head, *rest = key.split("_")
        return head + "".join(p.title() for p in rest)

    return {camel(k): v for k, v in d.items()}


@bp.post("/session")
@login_required
def start_session():
    data = json_body("lessonGuid", "classId")
    try:
        class_id = int(data["classId"])
        module_id = None if data.get("moduleId") is None else int(data["moduleId"])
        teaching_type = None if data.get("teachingType") is None else int(data["teachingType"])
    except (TypeError, ValueError):
        return error(400, "classId, moduleId and teachingType must be numbers.")
    if teaching_type not in (None, 1, 2):
        return error(400, "teachingType must be 1 (seminar) or 2 (workshop).")
    snap = state().kiosk.start_class(str(data["lessonGuid"]), class_id, module_id, teaching_type)
    return jsonify(snap), 201


@bp.get("/session")
@login_required
def get_session():
    snap = state().kiosk.session()
    if snap is None:
        return error(409, "No class is running.")
    return jsonify(snap)


@bp.delete("/session")
@login_required
def end_session():
    return jsonify(state().kiosk.end_class())


@bp.post("/session/marks")
@login_required
def mark():
    data = json_body("userId")
    if not isinstance(data.get("present"), bool):
        return error(400, "The field present must be true or false.")
    row = state().kiosk.mark(user_id_of(data), data["present"])
    return jsonify(row), 202


@bp.post("/session/marks/undo")
@login_required
def undo():
    user_id = user_id_of(json_body("userId"))
    if not state().kiosk.undo(user_id):
        return error(409, "Too late to undo: that mark was already sent.")
    return jsonify({"userId": user_id, "undone": True})


@bp.post("/outbox/retry")
@login_required
def retry_refused_mark():
    data = json_body("classId", "userId")
    try:
        class_id = int(data["classId"])
    except (TypeError, ValueError):
        return error(400, "classId must be a number.")
    user_id = user_id_of(data)
    if not state().kiosk.retry_dead_letter(class_id, user_id):
        return error(404, "You have no refused mark for that student in that class.")
    return jsonify({"classId": class_id, "userId": user_id, "queued": True}), 202


@bp.post("/session/absent-remaining")
@login_required
def absent_remaining():
    count = state().kiosk.mark_remaining_absent()
    return jsonify({"marked": count, "undoSeconds": state().kiosk.settings.undo_seconds}), 202
