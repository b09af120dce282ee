"""The Kiosk facade: timetable choice, class end times, the camera pipeline's wiring, status, close."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from types import SimpleNamespace

import pytest

from kiosk.app import Kiosk, choose_lesson, ends_at_for
from kiosk.errors import CameraError, LoginRequired, NoClassRunning
from kiosk.wiut.models import AttClass, Lessons, Slot, parse_time_range
from tests.fixtures.sandbox import DEMO_CLASS_ID, DEMO_LOGIN, DEMO_MODULE_ID
from tests.test_web_api import MONDAY_0930, MONDAY_GUID, Clock, FakeEngine, png, settings  # noqa: F401


def slot(day: str, time: str, user: str, guid: str) -> Slot:
    span = parse_time_range(time)
    return Slot(day_of_week=day, user=user, time=time, guid=guid,
                start=span[0] if span else None, end=span[1] if span else None)


LESSONS = Lessons(
    slots=[slot("Tuesday", "09:00 - 11:00", "teacher", "tue"),
           slot("Monday", "09:00 - 11:00", "someone.else", "mon-other"),
           slot("Monday", "09:00 - 11:00", "teacher", "mon-own"),
           slot("Monday", "TBA", "teacher", "tba")],
    att_classes=[AttClass(1, "TW9", "Seminar 1"), AttClass(2, "TW10", "Seminar 1"), AttClass(3, "TW1", "Seminar 1")],
)


def test_the_running_own_slot_comes_first_and_the_latest_week_is_chosen():
    choice = choose_lesson(LESSONS, teacher="Teacher", now=MONDAY_0930)
    assert [s.guid for s in choice.slots][:2] == ["mon-own", "mon-other"]
    assert choice.preselected_guid == "mon-own"
    assert choice.preselected_class_id == 2                      # TW10 beats TW9 (numbers, not text)
    assert [w.teaching_week for w in choice.weeks] == ["TW10", "TW9", "TW1"]


def test_a_slot_starting_within_15_minutes_is_chosen_but_not_one_an_hour_away():
    soon = choose_lesson(LESSONS, teacher="teacher", now=MONDAY_0930.replace(hour=8, minute=50))
    assert soon.preselected_guid == "mon-own" and soon.slots[0].starts_soon
    early = choose_lesson(LESSONS, teacher="teacher", now=MONDAY_0930.replace(hour=8, minute=0))
    assert early.preselected_guid is None
    assert early.slots[0].own                                    # own slots still come first


def test_a_class_ends_at_the_slot_end_plus_grace_else_after_the_maximum():
    own = LESSONS.slots[2]
    assert ends_at_for(own, MONDAY_0930, grace_minutes=15, max_minutes=180) == MONDAY_0930.replace(hour=11, minute=15)
    tuesday = MONDAY_0930 + dt.timedelta(days=1)
    assert ends_at_for(own, tuesday, grace_minutes=15, max_minutes=180) == tuesday + dt.timedelta(minutes=180)
    late = MONDAY_0930.replace(hour=11, minute=20)
    assert ends_at_for(own, late, grace_minutes=15, max_minutes=60) == late + dt.timedelta(minutes=60)
    assert ends_at_for(None, MONDAY_0930, grace_minutes=15, max_minutes=90) == MONDAY_0930 + dt.timedelta(minutes=90)


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
    assert status["loginExpiresAt"].endswith("+00:00")


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
    before = threading.active_count()
    kiosk.close()
    kiosk.close()
    assert kiosk.teacher is None and kiosk.session() is None
    assert threading.active_count() <= before - 1               # the tick thread is gone
