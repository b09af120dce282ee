"""The JSON API of the teacher page, through Flask's test client, against the real sandbox API on loopback."""

from __future__ import annotations

import datetime as dt
import io
from zoneinfo import ZoneInfo

import cv2
import numpy as np
import pytest
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from kiosk.app import Kiosk
from kiosk.config import load_settings
from kiosk.errors import EnrollmentRefused
from kiosk.events import EventBus
from kiosk.model.embedding_format import decode
from kiosk.outbox import Outbox
from kiosk.web import create_app
from kiosk.wiut.client import WiutClient
from tests.fixtures.sandbox import DEMO_CLASS_ID, DEMO_LOGIN, DEMO_MODULE_ID

TZ = ZoneInfo("Asia/Tashkent")
MONDAY_0930 = dt.datetime(2026, 11, 30, 9, 30, tzinfo=TZ)  # the demo teacher's slot runs Monday 09:00-11:00
MONDAY_GUID = "24133299-0748-45d9-b68e-ceb3f859a954"
OTHER_LOGIN = ("other.teacher", "sandbox-password-2")
METHOD = "mobilefacenet-v1"


class Clock:
    """A wall clock (aware datetime) and a monotonic clock the test moves by hand."""

    def __init__(self, now: dt.datetime = MONDAY_0930):
        self.now = now
        self.mono = 1000.0

    def wall(self) -> dt.datetime:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)
        self.mono += seconds


class FakeEngine:
    """Stands in for the recognition engine: any PNG with a bright centre is 'a face', a dark one is not."""

    def __init__(self):
        self.calls = 0

    def embed_photo(self, image: bytes) -> np.ndarray:
        self.calls += 1
        pixels = cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_GRAYSCALE)
        if pixels is None:
            raise EnrollmentRefused("not an image")
        if pixels.mean() < 20:
            raise EnrollmentRefused("no face found")
        rng = np.random.default_rng(int(pixels.mean()))
        vector = rng.normal(size=192).astype(np.float32)
        return vector / np.linalg.norm(vector)


def png(value: int, size: int = 64) -> bytes:
    ok, data = cv2.imencode(".png", np.full((size, size, 3), value, np.uint8))
    assert ok
    return data.tobytes()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def settings(sandbox, tmp_path):
    return load_settings(env={"KIOSK_API_URL": sandbox.url, "KIOSK_STATE_DIR": str(tmp_path),
                              "KIOSK_UNDO_SECONDS": "30", "KIOSK_SSE_MAX_STREAMS": "2",
                              "KIOSK_MAX_UPLOAD_MB": "1"})


@pytest.fixture
def kiosk_engine():
    """The engine behind enrolment; a module can override this fixture with the real one."""
    return FakeEngine()


@pytest.fixture
def kiosk(settings, clock, kiosk_engine):
    bus = EventBus()
    holder: dict[str, Kiosk] = {}
    outbox = Outbox(settings.state_dir, client_for=lambda t: holder["k"].client_for(t), events=bus,
                    backoff_base=0.05, backoff_cap=0.2)
    k = Kiosk(settings, client_factory=lambda: WiutClient(settings.api_url, timeout=2, retries=1, backoff=0.01),
              engine=kiosk_engine, events=bus, outbox=outbox, clock=clock.wall, monotonic=clock.monotonic,
              tick_seconds=3600)
    holder["k"] = k
    outbox.start()
    yield k
    k.close()
    outbox.stop(flush_timeout=1.0)


@pytest.fixture
def app(kiosk, clock):
    return create_app(kiosk, testing=True, monotonic=clock.monotonic)


@pytest.fixture
def web(app):
    return app.test_client()


def log_in(web, login=DEMO_LOGIN, **extra):
    response = web.post("/api/login", json={"username": login[0], "password": login[1], **extra})
    assert response.status_code == 200, response.get_json()
    return response.get_json()["csrfToken"]


def start_class(web, token, class_id=DEMO_CLASS_ID):
    response = web.post("/api/session", headers={"X-CSRF-Token": token},
                        json={"lessonGuid": MONDAY_GUID, "classId": class_id, "moduleId": DEMO_MODULE_ID,
                              "teachingType": 1})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def row(snapshot, user_id):
    return next(s for s in snapshot["students"] if s["userId"] == user_id)


# --- login ---------------------------------------------------------------------------------------
def test_login_sets_an_httponly_strict_cookie_and_returns_the_csrf_token(web):
    response = web.post("/api/login", json={"username": DEMO_LOGIN[0], "password": DEMO_LOGIN[1]})
    assert response.status_code == 200
    body = response.get_json()
    assert body["username"] == DEMO_LOGIN[0] and len(body["csrfToken"]) >= 32
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    me = web.get("/api/me").get_json()
    assert me["csrfToken"] == body["csrfToken"] and me["username"] == DEMO_LOGIN[0]


def test_wrong_password_is_a_plain_401(web):
    response = web.post("/api/login", json={"username": DEMO_LOGIN[0], "password": "wrong-placeholder"})
    assert response.status_code == 401
    assert response.get_json() == {"error": "Wrong username or password."}
    assert web.get("/api/me").status_code == 401


def test_university_down_at_login_is_503_with_a_plain_sentence(web, sandbox):
    sandbox.state.set_knobs(unavailable_for=60)
    response = web.post("/api/login", json={"username": DEMO_LOGIN[0], "password": DEMO_LOGIN[1]})
    assert response.status_code == 503
    assert "university API is not answering" in response.get_json()["error"]


def test_login_needs_a_json_body(web):
    response = web.post("/api/login", data={"username": "teacher", "password": "x"})
    assert response.status_code == 400
    assert "JSON" in response.get_json()["error"]


def test_logout_forgets_the_teacher(web, kiosk):
    token = log_in(web)
    assert web.post("/api/logout").status_code == 403          # CSRF applies to logout too
    assert web.post("/api/logout", headers={"X-CSRF-Token": token}).status_code == 200
    assert web.get("/api/me").status_code == 401
    assert kiosk.teacher is None


def test_no_cookie_is_401_on_every_private_endpoint(web):
    for method, path in [("GET", "/api/me"), ("GET", "/api/modules"), ("GET", "/api/session"),
                         ("POST", "/api/session"), ("DELETE", "/api/session"), ("POST", "/api/session/marks"),
                         ("GET", "/api/status"), ("GET", "/api/events"), ("POST", "/api/enroll")]:
        response = web.open(path, method=method)
        assert response.status_code == 401, path
        assert response.get_json() == {"error": "Log in first."}


def test_state_changes_without_or_with_a_wrong_csrf_token_are_403(web):
    token = log_in(web)
    body = {"lessonGuid": MONDAY_GUID, "classId": DEMO_CLASS_ID}
    assert web.post("/api/session", json=body).status_code == 403
    wrong = web.post("/api/session", json=body, headers={"X-CSRF-Token": token[:-1] + "x"})
    assert wrong.status_code == 403 and "security token" in wrong.get_json()["error"]
    assert web.get("/api/session").status_code == 409            # nothing was started


def test_requests_from_another_site_are_refused(web):
    evil = {"Origin": "http://evil.example"}
    response = web.post("/api/login", headers=evil, json={"username": DEMO_LOGIN[0], "password": DEMO_LOGIN[1]})
    assert response.status_code == 403
    token = log_in(web)
    refused = web.post("/api/session", headers={**evil, "X-CSRF-Token": token},
                       json={"lessonGuid": MONDAY_GUID, "classId": DEMO_CLASS_ID})
    assert refused.status_code == 403
    same = web.post("/api/session", headers={"Origin": "http://localhost", "X-CSRF-Token": token},
                    json={"lessonGuid": MONDAY_GUID, "classId": DEMO_CLASS_ID})
    assert same.status_code == 201


def test_failed_logins_are_limited_with_retry_after(web, clock):
    for _ in range(5):
        assert web.post("/api/login", json={"username": "teacher", "password": "nope"}).status_code == 401
    blocked = web.post("/api/login", json={"username": DEMO_LOGIN[0], "password": DEMO_LOGIN[1]})
    assert blocked.status_code == 429
    assert 1 <= int(blocked.headers["Retry-After"]) <= 60
    clock.advance(61)
    assert web.post("/api/login", json={"username": DEMO_LOGIN[0], "password": DEMO_LOGIN[1]}).status_code == 200


# --- timetable -----------------------------------------------------------------------------------
def test_modules_of_the_teacher(web):
    log_in(web)
    ids = {m["id"] for m in web.get("/api/modules").get_json()}
    assert DEMO_MODULE_ID in ids and 903 not in ids              # 903 belongs to another teacher


def test_lessons_preselect_the_slot_running_now_and_the_latest_week(web):
    log_in(web)
    body = web.get(f"/api/modules/{DEMO_MODULE_ID}/lessons?teachingType=1").get_json()
    assert body["preselected"] == {"lessonGuid": MONDAY_GUID, "classId": 46890}    # TW2 is the latest
    assert body["slots"][0]["runningNow"] is True and body["slots"][0]["own"] is True
    assert [w["teachingWeek"] for w in body["attClasses"]] == ["TW2", "TW1"]


def test_lessons_preselect_nothing_when_no_slot_runs(web, clock):
    clock.now = dt.datetime(2026, 12, 1, 9, 30, tzinfo=TZ)       # a Tuesday
    log_in(web)
    body = web.get(f"/api/modules/{DEMO_MODULE_ID}/lessons?teachingType=1").get_json()
    assert body["preselected"]["lessonGuid"] is None


def test_workshop_starting_within_15_minutes_is_preselected_and_own_slots_come_first(web, clock):
    clock.now = dt.datetime(2026, 12, 2, 12, 50, tzinfo=TZ)      # Wednesday, the 13:00 workshop
    log_in(web)
    body = web.get(f"/api/modules/{DEMO_MODULE_ID}/lessons?teachingType=2").get_json()
    assert body["slots"][0]["own"] and body["slots"][0]["startsSoon"]
    assert body["preselected"]["lessonGuid"] == body["slots"][0]["guid"]
    assert web.get(f"/api/modules/{DEMO_MODULE_ID}/lessons?teachingType=3").status_code == 400
    for bad in ("-1", "abc", "1e3", "9999999999"):
        answer = web.get(f"/api/modules/{bad}/lessons?teachingType=1")
        assert answer.status_code == 400 and "moduleId" in answer.get_json()["error"]


# --- the running class ---------------------------------------------------------------------------
def test_start_get_and_end_a_class(web):
    token = log_in(web)
    snap = start_class(web, token)
    assert snap["classId"] == DEMO_CLASS_ID and len(snap["students"]) == 24
    assert snap["endsAt"].startswith("2026-11-30T11:15")        # slot end 11:00 + 15 min grace
    got = web.get("/api/session").get_json()
    assert set(got["students"][0]) >= {"userId", "fullName", "present", "confidence", "source", "enrolled"}
    assert web.get("/api/me").get_json()["classRunning"] is True
    again = web.post("/api/session", headers={"X-CSRF-Token": token},
                     json={"lessonGuid": MONDAY_GUID, "classId": DEMO_CLASS_ID})
    assert again.status_code == 409
    assert web.delete("/api/session", headers={"X-CSRF-Token": token}).status_code == 200
    assert web.get("/api/session").status_code == 409
    assert web.delete("/api/session", headers={"X-CSRF-Token": token}).status_code == 409


def test_marks_undo_and_all_remaining_absent_reach_the_university(web, sandbox, kiosk):
    token = log_in(web)
    snap = start_class(web, token)
    unmarked = [s["userId"] for s in snap["students"] if s["source"] is None]
    first, second = unmarked[0], unmarked[1]
    h = {"X-CSRF-Token": token}
    marked = web.post("/api/session/marks", headers=h, json={"userId": first, "present": True})
    assert marked.status_code == 202
    assert marked.get_json()["source"] == "manual" and marked.get_json()["pendingUndo"] > 0
    assert web.post("/api/session/marks/undo", headers=h, json={"userId": first}).status_code == 200
    assert row(web.get("/api/session").get_json(), first)["source"] is None
    web.post("/api/session/marks", headers=h, json={"userId": second, "present": True})
    response = web.post("/api/session/absent-remaining", headers=h)
    assert response.get_json()["marked"] == len(unmarked) - 1
    assert web.post("/api/session/marks", headers=h, json={"userId": "99999999", "present": True}).status_code == 404
    assert web.post("/api/session/marks", headers=h, json={"userId": first, "present": "yes"}).status_code == 400
    web.delete("/api/session", headers=h)                        # ending sends marks still in their undo window
    assert kiosk.outbox.flush(5.0)
    stored = sandbox.state.attendance(DEMO_CLASS_ID)
    assert stored[second].confidence == 105
    assert stored[first].confidence == -1


def test_camera_recognition_turns_a_student_present(web, kiosk):
    token = log_in(web)
    snap = start_class(web, token)
    user = next(s["userId"] for s in snap["students"] if s["source"] is None)
    assert kiosk._session.on_recognised(user, 87) == "marked"
    got = row(web.get("/api/session").get_json(), user)
    assert got["present"] is True and got["source"] == "camera" and got["confidence"] == 87


# --- take-over -----------------------------------------------------------------------------------
def test_another_teacher_must_confirm_a_take_over_which_flushes_the_first_teachers_marks(app, sandbox, kiosk):
    first, second = app.test_client(), app.test_client()
    token = log_in(first)
    snap = start_class(first, token)
    user = next(s["userId"] for s in snap["students"] if s["source"] is None)
    first.post("/api/session/marks", headers={"X-CSRF-Token": token}, json={"userId": user, "present": False})
    asked = second.post("/api/login", json={"username": OTHER_LOGIN[0], "password": OTHER_LOGIN[1]})
    assert asked.status_code == 409
    assert asked.get_json()["teacher"] == DEMO_LOGIN[0] and asked.get_json()["takeover"] is True
    assert first.get("/api/session").status_code == 200          # nothing changed yet
    log_in(second, OTHER_LOGIN, takeover=True)
    assert sandbox.state.attendance(DEMO_CLASS_ID)[user].confidence == -1   # sent with the first teacher's tokens
    assert first.get("/api/me").status_code == 401
    assert second.get("/api/session").status_code == 409
    assert kiosk.teacher == OTHER_LOGIN[0]


def test_the_same_teacher_logging_in_again_keeps_the_class(app):
    phone, laptop = app.test_client(), app.test_client()
    start_class(phone, log_in(phone))
    log_in(laptop)
    assert laptop.get("/api/session").status_code == 200
    assert phone.get("/api/session").status_code == 200


# --- enrolment -----------------------------------------------------------------------------------
def test_enrol_a_photo_stores_the_embedding_in_the_university(web, sandbox):
    token = log_in(web)
    data = {"userId": "00019880", "image": (io.BytesIO(png(200)), "face.png")}
    response = web.post("/api/enroll", headers={"X-CSRF-Token": token}, data=data)
    assert response.status_code == 201, response.get_json()
    stored = sandbox.state.embedding("00019880", METHOD)
    assert decode(stored, method=METHOD, dim=192).shape == (1, 192)


def test_enrol_during_a_class_sends_old_and_new_vectors_and_uses_them_at_once(web, sandbox, kiosk):
    token = log_in(web)
    start_class(web, token)
    h = {"X-CSRF-Token": token}
    web.post("/api/enroll", headers=h, data={"userId": "00019880", "image": (io.BytesIO(png(200)), "a.png")})
    both = [(io.BytesIO(png(150)), "b.png"), (io.BytesIO(png(120)), "c.png")]
    assert web.post("/api/enroll", headers=h, data={"userId": "00019880", "image": both}).status_code == 201
    assert decode(sandbox.state.embedding("00019880", METHOD), method=METHOD, dim=192).shape == (3, 192)
    assert kiosk._session.gallery()["00019880"].shape == (3, 192)
    assert row(web.get("/api/session").get_json(), "00019880")["enrolled"] is True


def test_a_photo_without_a_face_is_refused_with_the_reason(web, sandbox):
    token = log_in(web)
    photos = [(io.BytesIO(png(200)), "ok.png"), (io.BytesIO(png(0)), "dark.png")]
    response = web.post("/api/enroll", headers={"X-CSRF-Token": token}, data={"userId": "00019880", "image": photos})
    assert response.status_code == 422
    body = response.get_json()
    assert body["error"] == "Photo 2: no face found."
    assert body["photos"] == [{"index": 1, "reason": "no face found"}]
    assert not sandbox.state.embedding("00019880", METHOD)       # nothing stored


def test_a_file_that_is_not_an_image_is_415(web, kiosk):
    token = log_in(web)
    data = {"userId": "00019880", "image": (io.BytesIO(b"%PDF-1.7 not a photo"), "face.jpg")}
    response = web.post("/api/enroll", headers={"X-CSRF-Token": token}, data=data)
    assert response.status_code == 415 and "not a JPEG" in response.get_json()["error"]
    assert kiosk.engine.calls == 0


def test_an_upload_over_the_limit_is_413(web):
    token = log_in(web)
    big = png(200) + b"\0" * 1_100_000
    # Encoded here in memory: the test client would otherwise spool a large body to a temporary file itself.
    boundary, body = encode_multipart({"userId": "00019880", "image": FileStorage(io.BytesIO(big), "big.png")})
    response = web.post("/api/enroll", headers={"X-CSRF-Token": token}, data=body,
                        content_type=f"multipart/form-data; boundary={boundary}")
    assert response.status_code == 413
    assert response.get_json()["error"] == "The upload is too large: at most 1 MB."


def test_a_large_upload_is_parsed_in_memory_never_spooled_to_disk(web, sandbox, monkeypatch):
    import tempfile

    import werkzeug.formparser

    def no_disk(*args, **kwargs):
        raise AssertionError("an upload touched the disk")

    token = log_in(web)
    photo = png(200) + b"\0" * 900_000                          # Werkzeug spools anything over 500 kB by default
    boundary, body = encode_multipart({"userId": "00019880", "image": FileStorage(io.BytesIO(photo), "a.png")})
    monkeypatch.setattr(tempfile, "TemporaryFile", no_disk)
    monkeypatch.setattr(tempfile, "SpooledTemporaryFile", no_disk)
    monkeypatch.setattr(werkzeug.formparser, "SpooledTemporaryFile", no_disk)   # its own imported name
    response = web.post("/api/enroll", headers={"X-CSRF-Token": token}, data=body,
                        content_type=f"multipart/form-data; boundary={boundary}")
    assert response.status_code == 201, response.get_json()


# --- status, health, headers, secrets ------------------------------------------------------------
def test_status_and_health(web):
    assert web.get("/healthz").get_json() == {"status": "ok"}
    log_in(web)
    status = web.get("/api/status").get_json()
    assert status["teacher"] == DEMO_LOGIN[0]
    assert status["pendingPosts"] == 0 and status["deadLetters"] == []
    assert status["loginExpiresAt"] is not None and status["camera"]["state"] == "off"


def test_security_headers_on_pages_and_api(web):
    for path in ("/login", "/api/me", "/healthz"):
        headers = web.get(path).headers
        csp = headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "no-referrer"
    assert web.get("/api/me").headers["Cache-Control"] == "no-store"


def test_openapi_lists_every_route(app, web):
    spec = web.get("/api/openapi.json").get_json()
    assert spec["openapi"].startswith("3.1")
    documented = {(path, method.upper()) for path, ops in spec["paths"].items() for method in ops}
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/") or rule.rule == "/healthz":
            path = rule.rule.replace("<module_id>", "{moduleId}")
            for method in rule.methods - {"HEAD", "OPTIONS"}:
                assert (path, method) in documented, (path, method)


def test_no_password_or_token_in_any_answer(app, sandbox, kiosk):
    first, second = app.test_client(), app.test_client()
    answers = []
    answers.append(first.post("/api/login", json={"username": "teacher", "password": "wrong-placeholder"}))
    token = log_in(first)
    h = {"X-CSRF-Token": token}
    for path in ("/api/me", "/api/modules", f"/api/modules/{DEMO_MODULE_ID}/lessons?teachingType=1",
                 "/api/status", "/healthz"):
        answers.append(first.get(path))
    answers.append(first.post("/api/session", headers=h, json={"lessonGuid": MONDAY_GUID, "classId": DEMO_CLASS_ID}))
    answers.append(first.get("/api/session"))
    answers.append(second.post("/api/login", json={"username": OTHER_LOGIN[0], "password": OTHER_LOGIN[1]}))
    text = "\n".join(r.get_data(as_text=True) + str(r.headers) for r in answers)
    assert DEMO_LOGIN[1] not in text and OTHER_LOGIN[1] not in text and "wrong-placeholder" not in text
    assert "eyJhbGciOi" not in text                              # no JWT (access or refresh token)


def test_the_kiosk_keeps_working_after_the_clock_moves_past_the_class_end(web, kiosk, clock):
    start_class(web, log_in(web))
    clock.advance(2 * 3600)                                      # 11:30: past 11:00 + 15 min grace
    kiosk.tick()
    assert web.get("/api/session").status_code == 409


def test_enrolment_from_the_kiosk_camera_without_a_camera_is_refused_plainly(web):
    token = log_in(web)
    response = web.post("/api/enroll/capture", headers={"X-CSRF-Token": token}, json={"userId": "00019880"})
    assert response.status_code == 503
    assert response.get_json() == {"error": "This kiosk has no camera configured."}


def test_a_browser_whose_session_ended_is_sent_to_the_login_with_a_reason(web, app, kiosk):
    assert web.get("/").headers["Location"].endswith("/login")   # never logged in: no reason to give
    log_in(web)
    assert web.get("/").headers["Location"].endswith("/start")
    kiosk.logout()                                                 # logged out elsewhere, or taken over
    assert web.get("/class").headers["Location"].endswith("/login?ended=1")
    assert web.get("/login?ended=1").status_code == 200


def test_the_session_names_the_class_as_the_teacher_knows_it(web):
    token = log_in(web)
    start_class(web, token)
    lesson = web.get("/api/session").get_json()["lesson"]
    assert lesson == {"moduleCode": "4LLAW020C-n", "moduleName": "Contract Law", "teachingType": "Seminar",
                      "dayOfWeek": "Monday", "time": "09:00 - 11:00", "teachingWeek": "TW1"}
