"""Regression tests for the review findings on marks: a mark by hand always wins, no duplicate posts,
nothing lost at shutdown (findings 1, 2, 5, 13, 18 and 20; the repro scripts made deterministic)."""

from __future__ import annotations

import random
import threading

import pytest

from kiosk import outbox as outbox_module
from kiosk import spool
from kiosk.attendance import ClassSession
from kiosk.errors import MalformedResponse, UpstreamRejected
from kiosk.outbox import DeadLetter, Mark, Outbox
from tests.test_attendance import CLASS_ID, GUID, METHOD, ROWS, Clocks, FakeServer
from tests.test_outbox import FakeClient, wait_for

ALI = "00000001"  # no mark on the roster


class RacingServer(FakeServer):
    """A slow StudentsByLesson: the answer is read when the request arrives, and the outbox delivers what
    it holds before the answer comes back (the teacher's client becomes available only then)."""

    def __init__(self, rows):
        super().__init__(rows)
        self.box: Outbox | None = None
        self.online = False  # client_for() answers None until the race: marks stay queued
        self.race = False

    def students(self, *args):
        answer = super().students(*args)  # the server's state now ...
        if self.race:
            self.race = False
            self.online = True
            assert self.box is not None and self.box.flush(5.0)  # ... our queued marks land meanwhile ...
        return answer  # ... and the old answer arrives


@pytest.fixture
def racing(tmp_path):
    server = RacingServer(ROWS)
    clocks = Clocks()
    box = Outbox(tmp_path, client_for=lambda teacher: server if server.online else None,
                 clock=clocks.monotonic, rng=random.Random(0))
    server.box = box
    session = ClassSession(server, box, teacher="teacher", lesson_guid=GUID, class_id=CLASS_ID,
                           embedding_method=METHOD, undo_seconds=0, clock=clocks.wall, monotonic=clocks.monotonic)
    session.load_roster()
    box.start()
    yield server, box, session, clocks
    box.stop(flush_timeout=0)


def shown(session, user_id):
    state = session.student(user_id)
    return state.confidence, state.source


# --- finding 1: a roster answer read before our mark landed ---------------------------------------------
def test_a_manual_absent_delivered_during_a_roster_refresh_is_not_overridden_by_the_camera(racing):
    server, box, session, clocks = racing
    session.mark_manual(ALI, present=False)  # undo 0: queued at once, not deliverable yet
    clocks.advance(1)
    server.race = True
    session.refresh_roster()
    assert server.rows[ALI][3] == -1
    assert shown(session, ALI) == (-1, "manual")  # the stale "no mark" did not erase it
    assert session.on_recognised(ALI, 87) == "manual"
    assert box.flush(5.0)
    assert server.posts == [(ALI, -1)] and server.rows[ALI][3] == -1


def test_a_camera_mark_delivered_during_a_roster_refresh_is_posted_once(racing):
    server, box, session, clocks = racing
    assert session.on_recognised(ALI, 87) == "marked"
    clocks.advance(1)
    server.race = True
    session.refresh_roster()
    assert shown(session, ALI) == (87, "camera")
    assert session.on_recognised(ALI, 91) == "already"
    assert box.flush(5.0)
    assert server.posts == [(ALI, 87)]


def test_a_manual_mark_made_elsewhere_beats_our_camera_mark_that_landed_after_it(racing):
    server, box, session, clocks = racing
    assert session.on_recognised(ALI, 87) == "marked"
    server.rows[ALI][3] = -1  # absent by hand on another device; our 87 lands after it, during the refresh
    clocks.advance(1)
    server.race = True
    session.refresh_roster()
    assert shown(session, ALI) == (-1, "server")
    assert box.flush(5.0)
    assert server.rows[ALI][3] == -1  # sent again, so the teacher's -1 is what the server keeps
    session.refresh_roster()
    assert shown(session, ALI)[0] == -1


# --- finding 2: a mark by hand still in the outbox or the spool ---------------------------------------
@pytest.mark.parametrize(("queued", "new", "kept"), [
    (-1, 87, -1), (105, 51, 105),  # the camera never replaces a mark by hand
    (87, -1, -1), (87, 90, 90), (105, -1, -1), (-1, 105, 105),  # otherwise the newest wins
])
def test_the_outbox_never_lets_a_camera_mark_replace_a_mark_by_hand(tmp_path, queued, new, kept):
    box = Outbox(tmp_path, client_for=lambda teacher: None)
    assert box.submit(Mark(CLASS_ID, ALI, queued, "teacher", 1.0)) is not None
    seq = box.submit(Mark(CLASS_ID, ALI, new, "teacher", 2.0))
    assert box.pending_for(CLASS_ID, ALI).confidence == kept
    assert (seq is None) == (kept != new)
    assert spool.merge([Mark(CLASS_ID, ALI, queued, "t", 1.0)], [Mark(CLASS_ID, ALI, new, "t", 2.0)])[0].confidence \
        == kept


def _session(server, box, teacher="teacher"):
    session = ClassSession(server, box, teacher=teacher, lesson_guid=GUID, class_id=CLASS_ID,
                           embedding_method=METHOD, clock=Clocks().wall, monotonic=Clocks().monotonic)
    session.load_roster()
    return session


def test_after_a_restart_a_spooled_absent_is_shown_and_beats_the_camera(tmp_path):
    spool.write(tmp_path / spool.SPOOL_NAME, [Mark(CLASS_ID, ALI, -1, "teacher", 0.0)])
    box = Outbox(tmp_path, client_for=lambda teacher: None)  # the teacher has not logged in yet
    box.load_spool()
    session = _session(FakeServer(ROWS), box)  # the roster still says "no mark"
    assert shown(session, ALI) == (-1, "manual")
    assert session.snapshot()["counts"]["present"] == 2
    assert session.on_recognised(ALI, 87) == "manual"
    assert box.pending_for(CLASS_ID, ALI).confidence == -1


def test_a_stuck_absent_of_the_first_teacher_beats_the_camera_in_the_next_teachers_class(tmp_path):
    server = FakeServer(ROWS)
    box = Outbox(tmp_path, client_for=lambda teacher: server if teacher == "second" else None)
    first = _session(server, box, teacher="first")
    first.mark_manual(ALI, present=False)
    first.end()  # first teacher logs out: their -1 waits for their next login
    second = _session(server, box, teacher="second")
    assert shown(second, ALI) == (-1, "manual")
    assert second.on_recognised(ALI, 87) == "manual"
    box.start()
    box.flush(2.0)
    assert server.posts == [] and box.pending_for(CLASS_ID, ALI).teacher == "first"
    box.stop(flush_timeout=0)


def test_a_spooled_absent_delivered_while_the_first_roster_is_read_is_still_shown(tmp_path):
    spool.write(tmp_path / spool.SPOOL_NAME, [Mark(CLASS_ID, ALI, -1, "teacher", 0.0)])
    server = RacingServer(ROWS)
    box = Outbox(tmp_path, client_for=lambda teacher: server if server.online else None)
    server.box = box
    box.load_spool()
    box.start()
    server.race = True  # the teacher logs in as the class starts: the -1 lands while the roster is read
    session = _session(server, box)
    assert server.rows[ALI][3] == -1 and shown(session, ALI) == (-1, "manual")
    assert session.on_recognised(ALI, 87) == "manual"
    box.stop(flush_timeout=1.0)
    assert server.posts == [(ALI, -1)]


def test_a_queued_camera_mark_from_before_a_restart_is_not_posted_twice(tmp_path):
    spool.write(tmp_path / spool.SPOOL_NAME, [Mark(CLASS_ID, ALI, 87, "teacher", 0.0)])
    box = Outbox(tmp_path, client_for=lambda teacher: None)
    box.load_spool()
    session = _session(FakeServer(ROWS), box)
    assert shown(session, ALI) == (87, "camera")
    assert session.on_recognised(ALI, 93) == "already"


def test_a_spooled_mark_by_hand_beats_a_camera_mark_queued_before_the_spool_was_read(tmp_path):
    spool.write(tmp_path / spool.SPOOL_NAME, [Mark(CLASS_ID, ALI, 105, "teacher", 0.0)])
    box = Outbox(tmp_path, client_for=lambda teacher: None)
    box.submit(Mark(CLASS_ID, ALI, 87, "teacher", 1.0))
    box.load_spool()
    assert box.pending_for(CLASS_ID, ALI).confidence == 105


# --- finding 5: shutdown while a delivery is in flight -----------------------------------------------------
@pytest.fixture
def slow_delivery(tmp_path, monkeypatch):
    """An outbox whose first delivery (of A, spooled by the last run) hangs until ``client.hold`` is set."""
    monkeypatch.setattr(outbox_module, "STOP_JOIN_S", 0.05)
    path = tmp_path / spool.SPOOL_NAME
    spool.write(path, [Mark(1, "A", 105, "t", 0.0)])
    client = FakeClient()
    client.hold = threading.Event()
    box = Outbox(tmp_path, client_for=lambda teacher: client)
    box.load_spool()
    box.start()
    assert client.in_call.wait(5)
    yield box, client, path
    client.hold.set()
    box.stop(flush_timeout=0)


def test_a_mark_spooled_at_shutdown_survives_a_delivery_that_ends_later(slow_delivery):
    box, client, path = slow_delivery
    box.submit(Mark(1, "B", -1, "t", 1.0))
    assert box.stop(flush_timeout=0) == 2
    assert sorted(m.user_id for m in spool.read(path)) == ["A", "B"]
    client.hold.set()  # the delivery of A ends after the spool was written
    wait_for(lambda: not any(m.user_id == "A" for m in box.pending()))
    assert [m.user_id for m in spool.read(path)] == ["B"]  # B kept; A delivered, so not sent again


def test_a_mark_in_flight_at_shutdown_leaves_the_spool_once_delivered(slow_delivery, tmp_path):
    box, client, path = slow_delivery
    box.stop(flush_timeout=0)
    client.hold.set()
    wait_for(lambda: not box.pending())
    assert not path.exists()  # no duplicate post after the next start


def test_a_mark_submitted_after_shutdown_is_spooled_at_once(tmp_path):
    box = Outbox(tmp_path, client_for=lambda teacher: None)
    box.start()
    assert box.stop(flush_timeout=0) == 0
    box.submit(Mark(1, "C", 105, "t", 2.0))
    assert [m.user_id for m in spool.read(tmp_path / spool.SPOOL_NAME)] == ["C"]


# --- finding 13: a teacher sees only their own refused marks ---------------------------------------------------
def _refused(box):
    mine = DeadLetter(Mark(CLASS_ID, ALI, 87, "teacher", 0.0), 400, "Refused.", 0.0)
    theirs = DeadLetter(Mark(999, "00077777", 105, "other.teacher", 0.0), 400, "Refused.", 0.0)
    box._dead.update({mine.mark.key: mine, theirs.mark.key: theirs})
    box._login_needed.update({"teacher", "other.teacher"})


def test_dead_letters_and_status_can_be_limited_to_one_teacher(tmp_path):
    box = Outbox(tmp_path)
    _refused(box)
    assert [d.mark.user_id for d in box.dead_letters(teacher="teacher")] == [ALI]
    assert len(box.dead_letters()) == 2  # default: every teacher's, as before
    status = box.status(teacher="teacher")
    assert status["loginRequired"] == ["teacher"] and [d["userId"] for d in status["deadLetters"]] == [ALI]
    assert box.status()["loginRequired"] == ["other.teacher", "teacher"]
    assert not box.retry_dead_letter(999, "00077777", teacher="teacher")  # not theirs: left alone
    assert box.retry_dead_letter(CLASS_ID, ALI, teacher="teacher")
    assert [m.user_id for m in box.pending()] == [ALI]


# --- finding 18: the outbox's error branches are reachable -------------------------------------------------------
def test_a_captive_portal_met_by_the_token_refresh_is_retried_not_dead_lettered(tmp_path):
    client = FakeClient(MalformedResponse("The university API answered Refresh with an HTML page.", call="Refresh"))
    box = Outbox(tmp_path, client_for=lambda teacher: client, backoff_base=0.01, backoff_cap=0.01)
    box.submit(Mark(CLASS_ID, ALI, 87, "teacher", 0.0))
    box.start()
    wait_for(lambda: not box.pending())
    assert client.delivered == {(CLASS_ID, ALI): 87} and box.dead_letters() == []
    box.stop(flush_timeout=0)


def test_a_refusal_is_dead_lettered_once(tmp_path):
    client = FakeClient(UpstreamRejected("The university API refused SetAttendanceStudent (400).", status=400))
    box = Outbox(tmp_path, client_for=lambda teacher: client)
    box.submit(Mark(CLASS_ID, ALI, 87, "teacher", 0.0))
    box.start()
    wait_for(lambda: box.dead_letters())
    assert len(client.calls) == 1 and not box.pending()
    box.stop(flush_timeout=0)


# --- finding 20: submit() answers its own sequence number ------------------------------------------------------
def test_submit_returns_its_own_sequence_number_when_another_submit_comes_first(tmp_path):
    class Bus:
        """While the first submit tells the page (after leaving the lock), another thread submits a mark."""

        def __init__(self):
            self.thread = None
            self.inner = []

        def publish(self, name, data):
            if self.thread is None:
                second = Mark(CLASS_ID, "00000002", 90, "teacher", 0.0)
                self.thread = threading.Thread(target=lambda: self.inner.append(box.submit(second)))
                self.thread.start()
                wait_for(lambda: len(box.pending()) == 2)  # queued; it waits for us to finish publishing

    bus = Bus()
    box = Outbox(tmp_path, events=bus)
    outer = box.submit(Mark(CLASS_ID, ALI, 87, "teacher", 0.0))
    bus.thread.join(5)
    assert outer is not None and bus.inner and outer < bus.inner[0]
