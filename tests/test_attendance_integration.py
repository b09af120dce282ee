"""The running class and the outbox against the sandbox API over real HTTP on loopback."""

import json
import random
import threading
import time

import pytest

from kiosk.attendance import ClassSession
from kiosk.outbox import Mark, Outbox
from tests.fixtures.sandbox import DEMO_CLASS_ID, DEMO_LOGIN
from tests.helpers import wait_for

GUID = "24133299-0748-45d9-b68e-ceb3f859a954"  # Monday 09:00 - 11:00, 24 students, class 46703
TEACHER = DEMO_LOGIN[0]
ALREADY_56 = "00020020"  # the owners' example: isAttended true, confidence 56
UNMARKED = "00019880"  # isAttended true, confidence 0


@pytest.fixture
def outbox_for(tmp_path):
    made = []

    def make(client_for):
        box = Outbox(tmp_path / "state", client_for=client_for, rng=random.Random(3), backoff_base=0.02,
                     backoff_cap=0.2)
        made.append(box)
        return box

    yield make
    for box in made:
        box.stop(flush_timeout=0)


def teachers_client(client):
    """client_for as the kiosk wires it: the client while that teacher is logged in, else None."""
    return lambda teacher: client if client.logged_in and client.username == teacher else None


def stored(sandbox, user_id):
    mark = sandbox.state.attendance(DEMO_CLASS_ID).get(user_id)
    return None if mark is None else mark.confidence


def session_on(client, outbox, **kw):
    session = ClassSession(client, outbox, teacher=TEACHER, lesson_guid=GUID, class_id=DEMO_CLASS_ID,
                           embedding_method="mobilefacenet-v1", undo_seconds=0, **kw)
    session.load_roster()
    return session


def test_recognition_and_manual_marks_reach_the_api(sandbox, logged_in_client, outbox_for):
    outbox = outbox_for(teachers_client(logged_in_client))
    outbox.start()
    session = session_on(logged_in_client, outbox)
    assert session.snapshot()["counts"]["total"] == 24
    assert session.on_recognised(UNMARKED, 87) == "marked"
    assert session.on_recognised(ALREADY_56, 90) == "already"
    session.mark_manual("00019887", present=False)
    assert outbox.flush(10.0)
    assert stored(sandbox, UNMARKED) == 87
    assert stored(sandbox, ALREADY_56) == 56
    assert stored(sandbox, "00019887") == -1
    assert sandbox.state.count("SetAttendanceStudent") == 2


def test_manual_absent_survives_a_restart(sandbox, logged_in_client, outbox_for):
    outbox = outbox_for(teachers_client(logged_in_client))
    outbox.start()
    first = session_on(logged_in_client, outbox)
    first.mark_manual(UNMARKED, present=False)
    assert outbox.flush(10.0)
    second = session_on(logged_in_client, outbox)  # a restarted kiosk reads -1 from the roster
    assert second.on_recognised(UNMARKED, 99) == "manual"
    assert outbox.flush(10.0)
    assert stored(sandbox, UNMARKED) == -1
    assert sandbox.state.count("SetAttendanceStudent") == 1


def test_failures_are_retried_until_delivered(sandbox, logged_in_client, outbox_for):
    sandbox.state.set_knobs(fail_next=9, fail_status=503)  # more than the client's own 3 retries, twice over
    outbox = outbox_for(teachers_client(logged_in_client))
    outbox.submit(Mark(DEMO_CLASS_ID, UNMARKED, 64, TEACHER, time.time()))
    outbox.start()
    wait_for(lambda: stored(sandbox, UNMARKED) == 64)
    assert sandbox.state.count("SetAttendanceStudent") == 10
    wait_for(lambda: outbox.healthy and not outbox.pending())


def test_a_refused_mark_becomes_a_dead_letter(sandbox, logged_in_client, outbox_for):
    outbox = outbox_for(teachers_client(logged_in_client))
    outbox.submit(Mark(99999, UNMARKED, 64, TEACHER, time.time()))  # no such class: 400 ProblemDetails
    outbox.start()
    wait_for(outbox.dead_letters)
    assert outbox.dead_letters()[0].status == 400
    assert sandbox.state.count("SetAttendanceStudent") == 1


def test_marks_wait_for_a_new_login_after_the_tokens_are_gone(sandbox, client, outbox_for):
    client.login(*DEMO_LOGIN)
    client.logout()
    outbox = outbox_for(lambda teacher: client)  # the client is handed out, but it has no tokens
    outbox.submit(Mark(DEMO_CLASS_ID, UNMARKED, 105, TEACHER, time.time()))
    outbox.start()
    wait_for(lambda: outbox.status()["loginRequired"] == [TEACHER])
    assert not outbox.healthy and len(outbox.pending()) == 1
    client.login(*DEMO_LOGIN)
    outbox.teacher_logged_in(TEACHER)
    wait_for(lambda: stored(sandbox, UNMARKED) == 105)


def test_spooled_marks_are_delivered_when_the_teacher_logs_in_again(sandbox, client, outbox_for):
    first = outbox_for(teachers_client(client))  # nobody logged in: the marks cannot go
    first.start()
    first.submit(Mark(DEMO_CLASS_ID, UNMARKED, 105, TEACHER, time.time()))
    first.submit(Mark(DEMO_CLASS_ID, "00019894", 72, TEACHER, time.time()))
    assert first.stop(flush_timeout=1.0) == 2
    text = first.spool_path.read_text()
    assert DEMO_LOGIN[1] not in text and "accessToken" not in text and "refreshToken" not in text
    assert {k for m in json.loads(text)["marks"] for k in m} == {"userId", "classId", "confidence", "teacher",
                                                                 "created"}

    second = outbox_for(teachers_client(client))
    assert second.load_spool() == 2
    second.start()
    assert second.flush(5.0) and len(second.pending()) == 2  # not logged in: the marks wait
    client.login(*DEMO_LOGIN)
    second.teacher_logged_in(TEACHER)
    wait_for(lambda: not second.pending())
    assert (stored(sandbox, UNMARKED), stored(sandbox, "00019894")) == (105, 72)
    assert not second.spool_path.exists()


def test_camera_and_web_threads_at_once(sandbox, logged_in_client, outbox_for):
    outbox = outbox_for(teachers_client(logged_in_client))
    outbox.start()
    session = session_on(logged_in_client, outbox)
    ids = [s["userId"] for s in session.snapshot()["students"]]
    outcomes = []

    def camera():
        for user_id in ids:
            outcomes.append(session.on_recognised(user_id, 80))

    def teacher():
        for user_id in ids[::2]:
            session.mark_manual(user_id, present=False)

    threads = [threading.Thread(target=camera), threading.Thread(target=teacher)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert outbox.flush(10.0)
    final = {s["userId"]: s["confidence"] for s in session.snapshot()["students"]}
    for user_id, confidence in final.items():
        assert stored(sandbox, user_id) == confidence
    for user_id in ids[::2]:
        assert final[user_id] == -1  # manual wins whichever thread came first
