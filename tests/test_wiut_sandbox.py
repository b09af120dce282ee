"""The sandbox is faithful to wiut-api.md: shapes, spellings, tokens, 401/ProblemDetails, knobs, clean shutdown."""

import threading
import time

import jwt
import pytest
import requests

from kiosk.wiut.sandbox import SandboxServer, _latency, configure_parser
from kiosk.wiut.sandbox_data import Mark, SandboxState
from tests.fixtures.sandbox import DEMO_CLASS_ID, DEMO_LOGIN, DEMO_MODULE_ID

# The example answers of wiut-api.md, written out as literals.
EXAMPLE_LOGIN = {"accessToken": "JWT", "refreshToken": "JWT"}
EXAMPLE_REFRESH = {"accessToken": "JWT"}
EXAMPLE_MODULES = [{"id": 785, "name": "Contract Law", "code": "4LLAW020C-n"}]
EXAMPLE_LESSONS = {
    "slots": [{"dayOfWeek": "Monday", "user": "el.ziyadullaeva", "time": "09:00 - 11:00",
               "guidID": "a06c076b-f592-4596-9d64-7244e6d5e576"}],
    "attClasses": [{"classId": 46703, "teachingWeek": "TW1", "teachingType": "Seminar 1"},
                   {"classId": 46890, "teachingWeek": "TW2", "teachingType": "Seminar 1"}],
}
EXAMPLE_STUDENTS = [{"userId": "00019880", "fullName": "...", "isAttended": True, "confidence": 56,
                     "faceEmbedders": ""}]
EXAMPLE_PROBLEM = {"type": "https://tools.ietf.org/html/rfc9110#section-15.5.1", "title": "...", "status": 400,
                   "errors": {"field": ["..."]}}


def assert_same_shape(actual, example, where="answer"):
    """Same key sets and JSON value types, recursively (lists: every item against the example's first)."""
    assert type(actual) is type(example), f"{where}: {type(actual).__name__} != {type(example).__name__}"
    if where.endswith(".errors"):  # ProblemDetails: field names vary, values are lists of strings
        assert actual and all(isinstance(v, list) and all(isinstance(m, str) for m in v) for v in actual.values())
    elif isinstance(example, dict):
        assert set(actual) == set(example), f"{where}: keys {sorted(actual)} != {sorted(example)}"
        for key in example:
            assert_same_shape(actual[key], example[key], f"{where}.{key}")
    elif isinstance(example, list) and example:
        assert actual, f"{where}: empty list"
        for i, item in enumerate(actual):
            assert_same_shape(item, example[0], f"{where}[{i}]")


def post(sandbox, path, token=None, **kw):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.post(sandbox.url + path, headers=headers, timeout=5, **kw)


def login(sandbox):
    answer = post(sandbox, "/Auth/Login", json={"username": DEMO_LOGIN[0], "password": DEMO_LOGIN[1]})
    answer.raise_for_status()
    return answer.json()


@pytest.fixture
def tokens(sandbox):
    return login(sandbox)


def guid_of(sandbox, token):
    return post(sandbox, "/Attendance/LessonsByParams", token,
                json={"moduleId": DEMO_MODULE_ID, "teachingType": 1}).json()["slots"][0]["guidID"]


# --- shapes -----------------------------------------------------------------------------------
def test_every_answer_has_the_example_shape(sandbox, tokens):
    access = tokens["accessToken"]
    assert_same_shape(tokens, EXAMPLE_LOGIN, "Login")
    refreshed = post(sandbox, "/Auth/Refresh", access, json={"refreshToken": tokens["refreshToken"]}).json()
    assert_same_shape(refreshed, EXAMPLE_REFRESH, "Refresh")
    assert_same_shape(post(sandbox, "/Attendance/MyModulesStaff", access).json(), EXAMPLE_MODULES, "Modules")
    lessons = post(sandbox, "/Attendance/LessonsByParams", access, json={"moduleId": 785, "teachingType": 1}).json()
    assert_same_shape(lessons, EXAMPLE_LESSONS, "Lessons")
    roster = post(sandbox, "/Attendance/StudentsByLesson", access, params={
        "LessonGuidId": lessons["slots"][0]["guidID"], "embeddingType": "m", "classId": DEMO_CLASS_ID}).json()
    assert_same_shape(roster, EXAMPLE_STUDENTS, "Students")
    bad = post(sandbox, "/Attendance/SetAttendanceStudent", access,
               json={"classId": DEMO_CLASS_ID, "userId": "00019880", "confidence": 50})
    assert bad.headers["Content-Type"].startswith("application/problem+json")
    assert_same_shape(bad.json(), EXAMPLE_PROBLEM, "ProblemDetails")


def test_tokens_have_the_documented_claims(tokens):
    access = jwt.decode(tokens["accessToken"], options={"verify_signature": False})
    refresh = jwt.decode(tokens["refreshToken"], options={"verify_signature": False})
    assert jwt.get_unverified_header(tokens["accessToken"])["alg"] == "HS256"
    assert {"sub", "unique_name", "jti", "exp", "iss", "aud"} <= set(access)
    assert (access["iss"], access["aud"], access["unique_name"]) == ("MyApp", "MyAppUsers", "teacher")
    assert refresh["typ"] == "refresh" and refresh["exp"] - time.time() > 29 * 86400


# --- 401 and ProblemDetails -------------------------------------------------------------------
@pytest.mark.parametrize("token", [None, "garbage", "forged"])
def test_missing_or_bad_tokens_get_401_invalid_token(sandbox, tokens, token):
    if token == "forged":
        claims = jwt.decode(tokens["accessToken"], options={"verify_signature": False})
        token = jwt.encode(claims, "not-the-sandbox-secret-0123456789abcdef", algorithm="HS256")
    answer = post(sandbox, "/Attendance/MyModulesStaff", token)
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


def test_refresh_token_is_not_an_access_token(sandbox, tokens):
    assert post(sandbox, "/Attendance/MyModulesStaff", tokens["refreshToken"]).status_code == 401


def test_expired_access_token_is_401_but_accepted_by_refresh():
    clock = [time.time()]
    with SandboxServer(SandboxState(clock=lambda: clock[0], access_ttl=1)) as sandbox:
        tokens = login(sandbox)
        clock[0] += 5
        assert post(sandbox, "/Attendance/MyModulesStaff", tokens["accessToken"]).status_code == 401
        refreshed = post(sandbox, "/Auth/Refresh", tokens["accessToken"], json={"refreshToken": tokens["refreshToken"]})
        assert refreshed.status_code == 200 and "refreshToken" not in refreshed.json()
        assert post(sandbox, "/Attendance/MyModulesStaff", refreshed.json()["accessToken"]).status_code == 200


def test_refresh_needs_both_header_and_body(sandbox, tokens):
    assert post(sandbox, "/Auth/Refresh", json={"refreshToken": tokens["refreshToken"]}).status_code == 401
    assert post(sandbox, "/Auth/Refresh", tokens["accessToken"], json={}).status_code == 400


def test_revoked_refresh_tokens_get_401(sandbox, tokens):
    sandbox.state.revoke_refresh_tokens()
    answer = post(sandbox, "/Auth/Refresh", tokens["accessToken"], json={"refreshToken": tokens["refreshToken"]})
    assert answer.status_code == 401


def test_rotation_knob_answers_a_new_refresh_token_and_retires_the_old(sandbox, tokens):
    sandbox.state.set_knobs(rotate_refresh=True)
    body = {"refreshToken": tokens["refreshToken"]}
    first = post(sandbox, "/Auth/Refresh", tokens["accessToken"], json=body)
    assert first.json()["refreshToken"] != tokens["refreshToken"]
    assert post(sandbox, "/Auth/Refresh", tokens["accessToken"], json=body).status_code == 401


@pytest.mark.parametrize("body, field", [
    ({"classId": DEMO_CLASS_ID, "userId": "00019880"}, "confidence"),
    ({"classId": "46703", "userId": "00019880", "confidence": 60}, "classId"),
    ({"classId": DEMO_CLASS_ID, "userId": "00019880", "confidence": 101}, "confidence"),
    ({"classId": DEMO_CLASS_ID, "userId": "00019880", "confidence": 0}, "confidence"),
])
def test_bad_attendance_bodies_get_problem_details(sandbox, tokens, body, field):
    answer = post(sandbox, "/Attendance/SetAttendanceStudent", tokens["accessToken"], json=body)
    assert answer.status_code == 400 and field in answer.json()["errors"]
    assert sandbox.state.attendance(DEMO_CLASS_ID)["00019880"] == Mark(True, 0)  # unchanged


def test_students_by_lesson_needs_its_query_names(sandbox, tokens):
    guid = guid_of(sandbox, tokens["accessToken"])
    answer = post(sandbox, "/Attendance/StudentsByLesson", tokens["accessToken"],
                  params={"lessonGuid": guid, "embeddingType": "m", "classId": DEMO_CLASS_ID})
    assert answer.status_code == 400 and "LessonGuidId" in answer.json()["errors"]


def test_only_post_is_allowed(sandbox, tokens):
    answer = requests.get(sandbox.url + "/Attendance/MyModulesStaff", timeout=5,
                          headers={"Authorization": f"Bearer {tokens['accessToken']}"})
    assert answer.status_code == 405


# --- Python API and knobs ---------------------------------------------------------------------
def test_python_api_adds_students_and_classes(sandbox, tokens):
    state = sandbox.state
    guid = state.add_slot(DEMO_MODULE_ID, 1, day_of_week="Tuesday", time="14:00 - 15:00")
    class_id = state.add_class(DEMO_MODULE_ID, 1, teaching_week="TW3")
    state.add_student("00099999", "Added Person", slots=[guid])
    roster = post(sandbox, "/Attendance/StudentsByLesson", tokens["accessToken"],
                  params={"LessonGuidId": guid, "embeddingType": "m", "classId": class_id}).json()
    assert roster == [{"userId": "00099999", "fullName": "Added Person", "isAttended": False, "confidence": 0,
                       "faceEmbedders": ""}]
    post(sandbox, "/Attendance/SetAttendanceStudent", tokens["accessToken"],
         json={"classId": class_id, "userId": "00099999", "confidence": 105}).raise_for_status()
    assert state.attendance(class_id) == {"00099999": Mark(True, 105)}


def test_set_embedding_replaces_per_user_and_method(sandbox, tokens):
    for value in ("first", "second"):
        post(sandbox, "/Attendance/SetEmbedding", tokens["accessToken"], json={
            "userId": "00019880", "pathImage": "string", "faceEmbeding": value, "embedderMetod": "m"}
        ).raise_for_status()
    assert sandbox.state.embedding("00019880", "m") == "second"
    assert sandbox.state.embedding("00019880", "other") is None


def test_knobs_endpoint_sets_faults_outside_api(sandbox, tokens):
    answer = requests.post(sandbox.url.removesuffix("/api") + "/sandbox/knobs", timeout=5,
                           json={"failure_rate": 1.0, "latency_ms": [0, 1]})
    assert answer.status_code == 200 and sandbox.state.knobs.failure_rate == 1.0
    assert post(sandbox, "/Attendance/MyModulesStaff", tokens["accessToken"]).status_code == 500
    assert sandbox.state.count("MyModulesStaff") == 1


@pytest.mark.parametrize("body", [["x"], {"latency_ms": 5}, {"no_such_knob": 1}, {"unavailable_mode": "later"}])
def test_bad_knobs_are_refused_with_400(sandbox, body):
    answer = requests.post(sandbox.url.removesuffix("/api") + "/sandbox/knobs", json=body, timeout=5)
    assert answer.status_code == 400 and answer.json()["error"]


def test_unavailable_window_answers_503(sandbox, tokens):
    sandbox.state.set_knobs(unavailable_for=60)
    answer = post(sandbox, "/Attendance/MyModulesStaff", tokens["accessToken"])
    assert answer.status_code == 503 and "Retry-After" in answer.headers


def test_drop_mode_closes_connections_unanswered(sandbox, tokens):
    sandbox.state.set_knobs(unavailable_for=60, unavailable_mode="drop")
    with pytest.raises(requests.ConnectionError):
        post(sandbox, "/Attendance/MyModulesStaff", tokens["accessToken"])
    assert sandbox.state.count("MyModulesStaff") == 1


def test_unknown_malformed_kind_is_refused(sandbox):
    with pytest.raises(ValueError, match="malformed"):
        sandbox.state.set_knobs(malformed={"Login": "sideways"})


# --- server lifecycle and command line ---------------------------------------------------------
def test_server_shuts_down_cleanly():
    before = threading.active_count()
    server = SandboxServer().start()
    with server, requests.Session() as kept_alive:
        requests.post(server.url + "/Attendance/MyModulesStaff", timeout=5)
        # A client that keeps its connection open parks a request thread in a read: close must end it too.
        kept_alive.post(server.url + "/Attendance/MyModulesStaff", timeout=5)
    server.close()  # idempotent
    assert threading.active_count() == before
    with pytest.raises(requests.ConnectionError):
        requests.post(server.url + "/Auth/Login", timeout=2, json={})


def test_command_line_options():
    import argparse

    parser = argparse.ArgumentParser()
    configure_parser(parser)
    args = parser.parse_args(["--port", "0", "--latency-ms", "10-50", "--failure-rate", "0.2", "--access-ttl", "1"])
    assert (args.port, args.latency_ms, args.failure_rate, args.access_ttl) == (0, (0.01, 0.05), 0.2, 1.0)
    assert _latency("30") == (0.03, 0.03)
    with pytest.raises(argparse.ArgumentTypeError):
        _latency("50-10")
