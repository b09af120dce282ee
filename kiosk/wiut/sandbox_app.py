"""The sandbox API as a Flask app: the paths, bodies, tokens and faults of ``wiut-api.md``.

:func:`create_app` serves a :class:`~kiosk.wiut.sandbox_data.SandboxState`; run it with
:class:`~kiosk.wiut.sandbox.SandboxServer`. All API calls are POST under ``/api``; ``POST /sandbox/knobs``
(outside ``/api``) sets fault knobs: ``failure_rate``, ``latency_ms`` [min, max], ``unavailable_for`` (s),
``unavailable_mode`` ("503" or "drop"), ``malformed`` {call: kind}, ``rotate_refresh``, ``fail_next``,
``fail_status``, ``revoke_refresh_tokens`` (true).
"""

from __future__ import annotations

import threading
from typing import Any

from flask import Flask, Response, jsonify, request

from kiosk.wiut.sandbox_data import SandboxState, TokenRejected

PROBLEM_TYPE = "https://tools.ietf.org/html/rfc9110#section-15.5.1"
INVALID_TOKEN = 'Bearer error="invalid_token"'
INT, STR = (int,), (str,)


def problem(errors: dict[str, list[str]], title: str = "One or more validation errors occurred.") -> Response:
    """An ASP.NET Core style ProblemDetails 400."""
    body = jsonify({"type": PROBLEM_TYPE, "title": title, "status": 400, "errors": errors})
    body.status_code = 400
    body.mimetype = "application/problem+json"
    return body


def unauthorized() -> Response:
    return Response(status=401, headers={"WWW-Authenticate": INVALID_TOKEN})


def body_fields(spec: dict[str, tuple[type, ...]]) -> tuple[dict[str, Any], Response | None]:
    """The JSON body checked against ``spec`` (field -> accepted types); a ProblemDetails on failure."""
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        return {}, problem({"$": ["The request body is not a JSON object."]})
    errors = {}
    for name, kinds in spec.items():
        value = data.get(name)
        if value is None:
            errors[name] = [f"The {name} field is required."]
        elif isinstance(value, bool) or not isinstance(value, kinds):
            errors[name] = [f"The JSON value of {name} could not be converted."]
    return data, (problem(errors) if errors else None)


def malform(data: Any, kind: str) -> Response:
    """A broken 200 answer: an HTML page, a missing field, a wrongly typed field, or an empty body."""
    if kind == "html":
        return Response("<!DOCTYPE html><html><body><h1>Service maintenance</h1></body></html>",
                        mimetype="text/html")
    if kind == "empty":
        return Response("", mimetype="application/json")
    target = data[0] if isinstance(data, list) and data else data
    if isinstance(target, dict) and target:
        key = next(iter(target))
        if kind == "missing-field":
            del target[key]
        else:
            target[key] = [target[key]] if isinstance(target[key], str) else str(target[key])
    return jsonify(data)


def create_app(state: SandboxState, stop: threading.Event | None = None) -> Flask:
    """The sandbox WSGI app serving ``state``; ``stop`` cuts injected latency short at shutdown."""
    stop = stop or threading.Event()
    app = Flask("kiosk.wiut.sandbox")
    app.config["MAX_CONTENT_LENGTH"] = 5 * 1024 * 1024

    def answer(call: str, data: Any) -> Response:
        kind = state.knobs.malformed.get(call)
        return malform(data, kind) if kind else jsonify(data)

    def bearer_user() -> str | None:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return None
        try:
            return state.user_of(header[7:].strip())
        except TokenRejected:
            return None

    @app.before_request
    def faults() -> Response | None:
        if not request.path.startswith("/api/"):
            return None
        state.note_call(request.path.rsplit("/", 1)[-1])
        knobs = state.knobs
        low, high = knobs.latency
        if high > 0:
            stop.wait(state.rng.uniform(low, max(low, high)))
        if state.clock() < knobs.unavailable_until:  # "drop" mode is handled by the server, before this
            return Response("Service Unavailable", status=503, headers={"Retry-After": "1"})
        status = state.take_failure()
        if status is not None:
            headers = {"Retry-After": "0"} if status in (429, 503) else {}
            return Response("Injected failure", status=status, headers=headers)
        if request.path not in ("/api/Auth/Login", "/api/Auth/Refresh") and bearer_user() is None:
            return unauthorized()
        return None

    @app.post("/api/Auth/Login")
    def login() -> Response:
        data, bad = body_fields({"username": STR, "password": STR})
        if bad:
            return bad
        tokens = state.login(data["username"], data["password"])
        return answer("Login", tokens) if tokens else Response(status=401)

    @app.post("/api/Auth/Refresh")
    def refresh() -> Response:
        data, bad = body_fields({"refreshToken": STR})
        if bad:
            return bad
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return unauthorized()
        try:
            return answer("Refresh", state.refresh(header[7:].strip(), data["refreshToken"]))
        except TokenRejected:
            return unauthorized()

    @app.post("/api/Attendance/MyModulesStaff")
    def my_modules() -> Response:
        return answer("MyModulesStaff", state.modules_of(bearer_user() or ""))

    @app.post("/api/Attendance/LessonsByParams")
    def lessons() -> Response:
        data, bad = body_fields({"moduleId": INT, "teachingType": INT})
        return bad or answer("LessonsByParams", state.lessons(data["moduleId"], data["teachingType"]))

    @app.post("/api/Attendance/StudentsByLesson")
    def students() -> Response:
        args = request.args
        errors = {name: [f"The {name} field is required."]
                  for name in ("LessonGuidId", "embeddingType", "classId") if not args.get(name)}
        if not errors and not args["classId"].lstrip("-").isdigit():
            errors["classId"] = [f"The value '{args['classId']}' is not valid."]
        if errors:
            return problem(errors)
        roster = state.roster(args["LessonGuidId"], int(args["classId"]), args["embeddingType"])
        if roster is None:
            return problem({"classId": ["No such lesson and class."]}, title="Bad Request")
        return answer("StudentsByLesson", roster)

    def stored() -> Response:
        """ASP.NET Core's ``Ok()``: 200 with no body and no Content-Type."""
        response = Response(status=200)
        del response.headers["Content-Type"]
        return response

    def portal(call: str) -> Response | None:
        """``malformed={call: "html"}`` on a write: a captive portal's 200 page, and nothing is stored."""
        return malform(None, "html") if state.knobs.malformed.get(call) == "html" else None

    @app.post("/api/Attendance/SetEmbedding")
    def set_embedding() -> Response:
        if (page := portal("SetEmbedding")) is not None:
            return page
        data, bad = body_fields({"userId": STR, "pathImage": STR, "faceEmbeding": STR, "embedderMetod": STR})
        if bad:
            return bad
        if data["userId"] not in state.students:
            return problem({"userId": ["No such student."]}, title="Bad Request")
        state.set_embedding(data["userId"], data["embedderMetod"], data["faceEmbeding"])
        return stored()

    @app.post("/api/Attendance/SetAttendanceStudent")
    def set_attendance() -> Response:
        if (page := portal("SetAttendanceStudent")) is not None:
            return page
        data, bad = body_fields({"classId": INT, "userId": STR, "confidence": INT})
        if bad:
            return bad
        confidence = data["confidence"]
        if not (51 <= confidence <= 100 or confidence in (105, -1)):
            return problem({"confidence": ["The confidence must be 51..100, 105 or -1."]})
        if data["classId"] not in state.classes or data["userId"] not in state.students:
            return problem({"classId": ["No such class or student."]}, title="Bad Request")
        state.set_mark(data["classId"], data["userId"], confidence)
        return stored()

    @app.post("/sandbox/knobs")
    def knobs() -> Response:
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            return jsonify({"error": "Send a JSON object of knobs."}), 400
        if data.pop("revoke_refresh_tokens", False):
            state.revoke_refresh_tokens()
        try:
            if "latency_ms" in data:
                low, high = data.pop("latency_ms")
                data["latency"] = (low / 1000, high / 1000)
            state.set_knobs(**data)
        except (TypeError, ValueError) as exc:
            return jsonify({"error": str(exc)}), 400
        return jsonify({"calls": dict(state.calls)})

    return app
