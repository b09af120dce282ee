"""The Kiosk facade: the running class's header, the camera pipeline's wiring, status, close."""

from __future__ import annotations

import dataclasses
import threading
import time
from datetime import datetime
from types import SimpleNamespace

import pytest

from kiosk.app import Kiosk
from kiosk.errors import CameraError, LoginRequired, NoClassRunning
from tests.fixtures.sandbox import DEMO_CLASS_ID, DEMO_LOGIN, DEMO_MODULE_ID
from tests.test_web_api import MONDAY_0930, MONDAY_GUID, Clock, FakeEngine, png, settings  # noqa: F401


class FakePipeline:
    """Records what the kiosk asks of the camera pipeline."""

    def __init__(self, on_decision, fail: bool = False):
        self.on_decision = on_decision
        self.fail = fail
        self.galleries: list[dict] = []
        self.stopped = 0

    def start(self, gallery):
        if self.fail:
            raise CameraError("The camera could not be opened.")
        self.galleries.append(dict(gallery))

    def set_gallery(self, gallery):
        self.galleries.append(dict(gallery))

    def stop(self):
        self.stopped += 1

    def stats(self):
        return {"fps": 9.5, "camera_fps": 15.0, "frames": 120, "dropped": 3, "faces_seen": 4,
                "last_recognition": 2.5, "camera_state": "running", "camera_error": None}


@dataclasses.dataclass
class Decision:
    user_id: str
    confidence: int


@pytest.fixture
def parts(settings):  # noqa: F811
    from kiosk.events import EventBus
    from kiosk.outbox import Outbox
    from kiosk.wiut.client import WiutClient

    clock = Clock()
    made: list[FakePipeline] = []
    bus = EventBus()
    holder = {}
    outbox = Outbox(settings.state_dir, client_for=lambda t: holder["k"].client_for(t), events=bus)
    feedback = SimpleNamespace(recent=lambda: [(clock.mono - 3.0, "recognised")])

    def pipeline_factory(*, on_decision):
        made.append(FakePipeline(on_decision, fail=getattr(pipeline_factory, "fail", False)))
        return made[-1]

    kiosk = Kiosk(settings, client_factory=lambda: WiutClient(settings.api_url, timeout=2, retries=1, backoff=0.01),
                  engine=FakeEngine(), events=bus, outbox=outbox, feedback=feedback,
                  pipeline_factory=pipeline_factory, clock=clock.wall, monotonic=clock.monotonic, tick_seconds=3600)
    holder["k"] = kiosk
    outbox.start()
    yield SimpleNamespace(kiosk=kiosk, made=made, clock=clock, factory=pipeline_factory, outbox=outbox)
    kiosk.close()
    outbox.stop(flush_timeout=1.0)


def test_nothing_works_before_login(parts):
    with pytest.raises(LoginRequired):
        parts.kiosk.modules()
    with pytest.raises(NoClassRunning):
        parts.kiosk.mark("00019880", True)


def test_the_camera_runs_only_while_a_class_runs_and_its_decisions_mark_students(parts):
    kiosk = parts.kiosk
    kiosk.login(*DEMO_LOGIN)
    snap = kiosk.start_class(MONDAY_GUID, DEMO_CLASS_ID, DEMO_MODULE_ID, 1)
    assert len(parts.made) == 1
    pipeline = parts.made[0]
    enrolled = {s["userId"] for s in snap["students"] if s["enrolled"]}
    assert set(pipeline.galleries[0]) == enrolled
    user = next(s["userId"] for s in snap["students"] if s["source"] is None)
    assert pipeline.on_decision(Decision(user, 91)) == "marked"
    assert next(s for s in kiosk.session()["students"] if s["userId"] == user)["confidence"] == 91
    kiosk.end_class()
    assert pipeline.stopped == 1 and kiosk.session() is None
    assert pipeline.on_decision(Decision(user, 91)) is None      # a late decision after the class is ignored


def test_a_broken_camera_does_not_stop_the_class(parts, capsys):
    parts.factory.fail = True
    parts.kiosk.login(*DEMO_LOGIN)
    parts.kiosk.start_class(MONDAY_GUID, DEMO_CLASS_ID)
    assert parts.kiosk.session() is not None
    user = parts.kiosk.session()["students"][0]["userId"]
    assert parts.kiosk.mark(user, True)["source"] == "manual"
    out = capsys.readouterr().out
    assert "camera pipeline did not start" in out and user not in out


def test_enrolment_during_a_class_updates_the_running_gallery(parts):
    kiosk = parts.kiosk
    kiosk.login(*DEMO_LOGIN)
    snap = kiosk.start_class(MONDAY_GUID, DEMO_CLASS_ID)
    user = next(s["userId"] for s in snap["students"] if not s["enrolled"])
    assert kiosk.enroll(user, [png(180)]) == 1
    assert user in parts.made[0].galleries[-1]


def test_status_gathers_camera_outbox_login_and_feedback(parts):
    kiosk = parts.kiosk
    kiosk.login(*DEMO_LOGIN)
    kiosk.start_class(MONDAY_GUID, DEMO_CLASS_ID)
    status = kiosk.status()
    assert status["camera"] == {"state": "running", "error": None, "fps": 15.0, "processedFps": 9.5,
                                "frames": 120, "dropped": 3}
    assert status["facesSeen"] == 4 and status["lastRecognitionSecondsAgo"] == 2.5
    assert status["feedback"] == [{"secondsAgo": 3.0, "signal": "recognised"}]
    assert status["pendingPosts"] == 0 and status["outboxHealthy"] is True
    # When the teacher must log in again: the refresh token's expiry (30 days on the sandbox), not the
    # access token's, which the kiosk renews by itself.
    login_expires = datetime.fromisoformat(status["loginExpiresAt"]).timestamp()
    access_expires = datetime.fromisoformat(status["accessExpiresAt"]).timestamp()
    assert login_expires == pytest.approx(time.time() + 30 * 86400, abs=30)
    assert access_expires == pytest.approx(time.time() + 900, abs=30)


def test_a_clock_far_from_the_universitys_is_warned_about(parts, monkeypatch):
    parts.kiosk.login(*DEMO_LOGIN)
    monkeypatch.setattr(parts.kiosk._client, "clock_skew", lambda: -300.0)
    assert "5 minutes" in parts.kiosk.status()["clockWarning"]
    monkeypatch.setattr(parts.kiosk._client, "clock_skew", lambda: 30.0)
    assert parts.kiosk.status()["clockWarning"] is None


def test_the_class_ends_by_itself_after_the_slot_and_grace(parts):
    kiosk = parts.kiosk
    kiosk.login(*DEMO_LOGIN)
    kiosk.start_class(MONDAY_GUID, DEMO_CLASS_ID, DEMO_MODULE_ID, 1)
    parts.clock.advance(100 * 60)                                # 11:10: within the grace
    kiosk.tick()
    assert kiosk.session() is not None
    parts.clock.advance(6 * 60)                                  # 11:16
    kiosk.tick()
    assert kiosk.session() is None and parts.made[0].stopped == 1


def test_close_ends_the_class_forgets_the_tokens_and_is_idempotent(parts):
    kiosk = parts.kiosk
    kiosk.login(*DEMO_LOGIN)
    kiosk.start_class(MONDAY_GUID, DEMO_CLASS_ID)
    def tick_threads():  # counted by name: the sandbox's own request threads come and go meanwhile
        return sum(t.name == "kiosk-tick" for t in threading.enumerate())

    before = tick_threads()
    kiosk.close()
    kiosk.close()
    assert kiosk.teacher is None and kiosk.session() is None
    assert tick_threads() == before - 1  # this kiosk's tick thread is gone


def test_the_running_class_says_which_module_type_slot_and_week_it_is(parts):
    kiosk = parts.kiosk
    kiosk.login(*DEMO_LOGIN)
    kiosk.lessons(DEMO_MODULE_ID, 1)
    snap = kiosk.start_class(MONDAY_GUID, DEMO_CLASS_ID, DEMO_MODULE_ID, 1)
    lesson = snap["lesson"]
    assert lesson["teachingType"] == "Seminar" and lesson["dayOfWeek"] == "Monday"
    assert lesson["time"].startswith("09:00") and lesson["teachingWeek"]
    assert lesson["moduleCode"] and lesson["moduleName"]         # looked up although modules() was not called
    assert kiosk.session()["lesson"] == lesson
    assert kiosk.end_class()["lesson"] == lesson


def test_a_class_started_without_module_and_type_still_has_a_header_object(parts):
    parts.kiosk.login(*DEMO_LOGIN)
    snap = parts.kiosk.start_class(MONDAY_GUID, DEMO_CLASS_ID)
    assert snap["lesson"]["moduleCode"] is None and snap["lesson"]["teachingWeek"] is None


def test_status_says_when_marks_wait_for_the_teacher_to_log_in_again(parts, monkeypatch):
    kiosk = parts.kiosk
    kiosk.login(*DEMO_LOGIN)
    assert kiosk.status()["loginNeeded"] is False
    refused = {**parts.outbox.status(), "loginRequired": [kiosk.teacher]}
    monkeypatch.setattr(parts.outbox, "status", lambda: refused)
    assert kiosk.status()["loginNeeded"] is True
