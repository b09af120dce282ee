"""ClassSession: the attendance rules of wiut-api.md, the undo window, roster refresh, end of class."""

import datetime as dt
import random
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from kiosk.attendance import DAYS, ClassSession, class_end, slot_end, slot_window
from kiosk.errors import NoClassRunning, NotOnRoster, UpstreamUnavailable
from kiosk.events import EventBus
from kiosk.model.embedding_format import encode
from kiosk.outbox import Outbox
from kiosk.wiut.models import RosterStudent

METHOD, DIM, CLASS_ID, GUID = "mobilefacenet-v1", 192, 46703, "a06c076b-f592-4596-9d64-7244e6d5e576"
TZ = ZoneInfo("Asia/Tashkent")
MONDAY_10 = dt.datetime(2026, 11, 30, 10, 0, tzinfo=TZ)  # a Monday


def vectors(seed, k=2):
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(k, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


class Clocks:
    """Wall (tz-aware) and monotonic time moving together."""

    def __init__(self):
        self.mono = 100.0

    def wall(self):
        return MONDAY_10 + dt.timedelta(seconds=self.mono - 100.0)

    def monotonic(self):
        return self.mono

    def advance(self, seconds):
        self.mono += seconds


class FakeServer:
    """StudentsByLesson from a dict; SetAttendanceStudent writes into it (a tiny stand-in of the API)."""

    def __init__(self, rows):
        self.rows = {r[0]: list(r) for r in rows}  # user_id -> [user_id, name, isAttended, confidence, emb]
        self.fail = None
        self.posts = []

    def students(self, lesson_guid, class_id, embedding_type):
        if self.fail:
            raise self.fail
        assert (lesson_guid, class_id, embedding_type) == (GUID, CLASS_ID, METHOD)
        return [RosterStudent(*row) for row in self.rows.values()]

    def set_attendance(self, class_id, user_id, confidence):
        self.posts.append((user_id, confidence))
        self.rows[user_id][3] = confidence


class RecordingOutbox(Outbox):
    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.submitted = []

    def submit(self, mark):
        self.submitted.append((mark.user_id, mark.confidence))
        return super().submit(mark)


ROWS = [
    ("00000001", "Ali Valiyev", False, 0, encode(vectors(1), METHOD)),
    ("00000002", "Bobur Karimov", True, 56, encode(vectors(2), METHOD)),
    ("00000003", "Dilnoza Rahimova", True, 105, ""),
    ("00000004", "Charos Aliyeva", False, -1, "kfe1;dlib-resnet-v1;128;1;AAAA"),
    ("00000005", "Eldor Tursunov", True, 0, "not an embedding at all"),
    ("00000006", "Aziza Yusupova", False, 0, encode(vectors(6), "mobilefacenet-v1")[:-8]),
]


@pytest.fixture
def clocks():
    return Clocks()


@pytest.fixture
def server():
    return FakeServer(ROWS)


@pytest.fixture
def outbox(tmp_path, clocks, server):
    """A real outbox delivering to the fake server once started (most tests only look at what is queued)."""
    box = RecordingOutbox(tmp_path, client_for=lambda teacher: server, clock=clocks.monotonic, rng=random.Random(0))
    yield box
    box.stop(flush_timeout=0)


@pytest.fixture
def bus():
    return EventBus()


@pytest.fixture
def make_session(server, outbox, clocks, bus):
    def make(**kw):
        options = dict(teacher="teacher", lesson_guid=GUID, class_id=CLASS_ID, embedding_method=METHOD,
                       undo_seconds=5.0, roster_refresh_seconds=60, clock=clocks.wall,
                       monotonic=clocks.monotonic, events=bus)
        session = ClassSession(server, outbox, **{**options, **kw})
        session.load_roster()
        return session
    return make


@pytest.fixture
def session(make_session):
    return make_session()


def row(session, user_id):
    return next(s for s in session.snapshot()["students"] if s["userId"] == user_id)


def has(shown, **expected):
    return {k: shown[k] for k in expected} == expected


# --- reading the roster -------------------------------------------------------------------------
def test_state_is_read_from_confidence_not_is_attended(session):
    assert (row(session, "00000001")["present"], row(session, "00000001")["source"]) == (None, None)
    assert row(session, "00000002")["present"] is True and row(session, "00000002")["confidence"] == 56
    assert row(session, "00000002")["source"] == "server"
    assert row(session, "00000003")["present"] is True and row(session, "00000003")["confidence"] == 105
    assert row(session, "00000004")["present"] is False and row(session, "00000004")["confidence"] == -1
    eldor = row(session, "00000005")
    assert eldor["isAttended"] is True and eldor["present"] is None  # isAttended is shown only


def test_bad_embeddings_mean_not_enrolled_with_a_reason(session):
    assert row(session, "00000001")["enrolled"] and row(session, "00000001")["notEnrolledReason"] is None
    for user_id, reason in [("00000003", "No face photo"), ("00000004", "another method"),
                            ("00000005", "not in the kiosk's format"), ("00000006", "does not hold")]:
        shown = row(session, user_id)
        assert not shown["enrolled"]
        assert reason in shown["notEnrolledReason"]
    assert set(session.gallery()) == {"00000001", "00000002"}
    assert session.gallery()["00000001"].shape == (2, DIM)


def test_snapshot_shape_and_order(session):
    snap = session.snapshot()
    assert set(snap) >= {"classId", "lessonGuid", "teacher", "startedAt", "endsAt", "counts", "students"}
    assert snap["counts"] == {"present": 2, "enrolled": 2, "total": 6}
    names = [s["fullName"] for s in snap["students"]]
    assert names == sorted(names)
    assert set(snap["students"][0]) == {"userId", "fullName", "present", "confidence", "source", "enrolled",
                                        "isAttended", "pendingUndo", "notEnrolledReason"}
    assert dt.datetime.fromisoformat(snap["endsAt"]) - dt.datetime.fromisoformat(snap["startedAt"]) == \
        dt.timedelta(minutes=180)


# --- recognitions -------------------------------------------------------------------------------
def test_recognition_above_50_is_posted_once(session, outbox):
    assert session.on_recognised("00000001", 87) == "marked"
    assert session.on_recognised("00000001", 95) == "already"
    assert outbox.submitted == [("00000001", 87)]
    assert has(row(session, "00000001"), present=True, confidence=87, source="camera")


@pytest.mark.parametrize(("user_id", "confidence", "outcome"), [
    ("00000002", 90, "already"),  # 56 from the server: a camera mark exists
    ("00000003", 90, "manual"),  # 105 by hand
    ("00000004", 90, "manual"),  # -1 by hand: the camera never overrides it
    ("99999999", 90, "not_on_roster"),
    ("00000001", 50, "ignored"),
    ("00000001", 12, "ignored"),
])
def test_recognition_outcomes(session, outbox, user_id, confidence, outcome):
    assert session.on_recognised(user_id, confidence) == outcome
    assert outbox.submitted == []


def test_confidence_above_100_is_posted_as_100(session, outbox):
    assert session.on_recognised("00000001", 130) == "marked"
    assert outbox.submitted == [("00000001", 100)]


def test_manual_mark_beats_the_camera_even_after_a_restart(server, clocks, make_session, outbox):
    first = make_session()
    first.mark_manual("00000001", present=False)
    assert first.on_recognised("00000001", 99) == "manual"
    clocks.advance(6)
    first.tick()
    outbox.start()
    assert outbox.flush(5.0)
    assert server.rows["00000001"][3] == -1
    # the kiosk restarts: a new session knows only what the roster says
    second = make_session()
    assert second.on_recognised("00000001", 99) == "manual"
    assert outbox.submitted == [("00000001", -1)]
    assert row(second, "00000001")["present"] is False


# --- manual marks and undo ----------------------------------------------------------------------
def test_manual_mark_waits_out_the_undo_window(session, outbox, clocks):
    shown = session.mark_manual("00000001", present=True)
    assert shown["confidence"] == 105 and shown["pendingUndo"] == pytest.approx(5.0)
    clocks.advance(4)
    session.tick()
    assert outbox.submitted == []
    assert row(session, "00000001")["pendingUndo"] == pytest.approx(1.0)
    clocks.advance(1.5)
    session.tick()
    assert outbox.submitted == [("00000001", 105)]
    assert row(session, "00000001")["pendingUndo"] is None
    assert not session.undo("00000001")


def test_undo_within_the_window_sends_nothing_and_restores(session, outbox, clocks):
    session.mark_manual("00000002", present=False)
    assert row(session, "00000002")["present"] is False
    clocks.advance(3)
    assert session.undo("00000002")
    clocks.advance(60)
    session.tick()
    session.end()
    assert outbox.submitted == []
    assert has(row(session, "00000002"), present=True, confidence=56, source="server")


def test_changing_a_manual_mark_in_the_window_then_undo_restores_the_original(session, outbox):
    session.mark_manual("00000001", present=True)
    session.mark_manual("00000001", present=False)
    assert session.undo("00000001")
    assert row(session, "00000001")["present"] is None and outbox.submitted == []


def test_camera_mark_queued_then_manual_absent_only_absent_is_delivered(session, outbox, clocks):
    assert session.on_recognised("00000001", 70) == "marked"
    session.mark_manual("00000001", present=False)
    clocks.advance(5)
    session.tick()
    assert [(m.user_id, m.confidence) for m in outbox.pending()] == [("00000001", -1)]


def test_mark_remaining_absent_only_touches_students_without_a_mark(session, outbox, clocks):
    session.on_recognised("00000001", 80)
    assert session.mark_remaining_absent() == 2  # 00000005 and 00000006; the others have marks
    clocks.advance(5)
    session.tick()
    assert sorted(outbox.submitted) == [("00000001", 80), ("00000005", -1), ("00000006", -1)]


def test_manual_mark_for_a_stranger_is_refused(session):
    with pytest.raises(NotOnRoster):
        session.mark_manual("99999999", present=True)


def test_undo_zero_sends_at_once(make_session, outbox):
    session = make_session(undo_seconds=0)
    session.mark_manual("00000001", present=True)
    assert outbox.submitted == [("00000001", 105)]


# --- roster refresh -----------------------------------------------------------------------------
def test_refresh_picks_up_marks_made_elsewhere(session, server, clocks):
    server.rows["00000001"][3] = 105
    clocks.advance(61)
    session.tick()
    assert has(row(session, "00000001"), present=True, confidence=105, source="server")
    assert session.on_recognised("00000001", 90) == "manual"


def test_refresh_keeps_a_manual_mark_still_in_its_undo_window(session, server):
    session.mark_manual("00000005", present=True)
    server.rows["00000005"][3] = -1
    session.refresh_roster()
    assert row(session, "00000005")["confidence"] == 105


def test_server_manual_mark_supersedes_our_queued_camera_mark(session, server, outbox):
    session.on_recognised("00000001", 80)
    server.rows["00000001"][3] = -1  # the teacher marked absent on another device meanwhile
    session.refresh_roster()
    assert row(session, "00000001")["confidence"] == -1
    assert [m.confidence for m in outbox.pending()] == [-1]


def test_refresh_adds_and_removes_students(session, server):
    server.rows["00000007"] = ["00000007", "Farrux Ergashev", False, 0, ""]
    del server.rows["00000006"]
    session.refresh_roster()
    ids = {s["userId"] for s in session.snapshot()["students"]}
    assert "00000007" in ids and "00000006" not in ids


def test_refresh_failure_is_kept_and_does_not_end_the_class(session, server, clocks):
    server.fail = UpstreamUnavailable("The university API could not be reached.")
    clocks.advance(61)
    assert session.tick() is False
    assert session.last_error == "The university API could not be reached."


def test_vectors_enrolled_during_the_class_are_used_at_once_and_kept(session):
    session.set_student_vectors("00000005", vectors(5, k=1))
    assert "00000005" in session.gallery() and row(session, "00000005")["enrolled"]
    session.refresh_roster()  # the roster still has the old (bad) string
    assert "00000005" in session.gallery()
    with pytest.raises(ValueError, match="dimension"):
        session.set_student_vectors("00000005", np.ones((1, 10)))


# --- end of class -------------------------------------------------------------------------------
def test_tick_ends_the_class_at_ends_at_and_sends_pending_marks(make_session, outbox, clocks, bus):
    sub = bus.subscribe()
    session = make_session(ends_at=MONDAY_10 + dt.timedelta(minutes=30))
    session.mark_manual("00000001", present=True)
    clocks.advance(29 * 60)
    assert session.tick() is False
    session.mark_manual("00000005", present=False)
    clocks.advance(61)
    assert session.tick() is True and session.ended
    assert ("00000005", -1) in outbox.submitted  # sent at the end without waiting for the undo window
    assert session.on_recognised("00000006", 90) == "ignored"
    with pytest.raises(NoClassRunning):
        session.mark_manual("00000006", present=True)
    names = []
    while (event := sub.get(timeout=0)) is not None:
        names.append((event.name, event.data.get("state")))
    assert names[-1] == ("session", "ended")
    assert ("student", None) in names


def test_student_event_after_a_change(session, bus):
    sub = bus.subscribe()
    session.on_recognised("00000001", 77)
    event = sub.get(timeout=0)
    assert event.name == "student"
    assert event.data["userId"] == "00000001" and event.data["present"] is True


def test_end_is_idempotent(session, outbox):
    session.mark_manual("00000001", present=True)
    session.end()
    session.end()
    assert outbox.submitted == [("00000001", 105)]


# --- slot times ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "day", "now", "expected"), [
    ("09:00 - 11:00", "Monday", MONDAY_10, dt.datetime(2026, 11, 30, 11, 0, tzinfo=TZ)),
    ("09:00 - 11:00", "", MONDAY_10, dt.datetime(2026, 11, 30, 11, 0, tzinfo=TZ)),
    ("09:00 - 11:00", "Tuesday", MONDAY_10, None),
    ("08:00 - 09:30", "Monday", MONDAY_10, None),  # already over
    ("no time", "Monday", MONDAY_10, None),
    ("09:00 - 11:00", "Monday", MONDAY_10.astimezone(dt.UTC), dt.datetime(2026, 11, 30, 11, 0, tzinfo=TZ)),
])
def test_slot_end(text, day, now, expected):
    assert slot_end(text, day, TZ, now) == expected


def test_slot_window_is_today_s_start_and_end_also_once_over():
    at = dt.datetime(2026, 11, 30, 12, 0, tzinfo=TZ)  # Monday, after the slot
    assert slot_window("09:00 - 11:00", "monday ", TZ, at) == (dt.datetime(2026, 11, 30, 9, 0, tzinfo=TZ),
                                                               dt.datetime(2026, 11, 30, 11, 0, tzinfo=TZ))
    assert slot_window("09:00 - 11:00", "Tuesday", TZ, at) is None
    assert slot_window("TBA", "Monday", TZ, at) is None
    # the day is the timetable zone's day, not UTC's: 01:00 Tuesday in Tashkent is still Monday in UTC
    assert slot_window("00:30 - 02:00", "Tuesday", TZ, dt.datetime(2026, 11, 30, 20, 0, tzinfo=dt.UTC)) is not None
    assert DAYS[MONDAY_10.weekday()] == "monday"


def test_class_end_adds_grace_or_uses_the_maximum():
    end = dt.datetime(2026, 11, 30, 11, 0, tzinfo=TZ)
    assert class_end(MONDAY_10, end, grace_minutes=15, max_minutes=180) == end + dt.timedelta(minutes=15)
    assert class_end(MONDAY_10, None, grace_minutes=15, max_minutes=180) == MONDAY_10 + dt.timedelta(hours=3)


def test_a_fractional_confidence_just_above_50_is_not_posted_as_50(session, outbox):
    assert session.on_recognised("00000001", 50.7) == "ignored"
    assert session.on_recognised("00000001", 51.2) == "marked"
    assert outbox.submitted == [("00000001", 51)]


def test_vectors_version_tells_when_to_rebuild_the_gallery(session, server):
    start = session.vectors_version
    session.refresh_roster()
    assert session.vectors_version == start  # nothing changed
    server.rows["00000005"][4] = encode(vectors(50), METHOD)
    session.refresh_roster()
    assert session.vectors_version > start and "00000005" in session.gallery()


def test_loading_the_roster_again_keeps_marks_in_their_undo_window(session, server, outbox, clocks):
    session.mark_manual("00000001", present=True)
    assert session.load_roster() == 6
    clocks.advance(5)
    session.tick()
    assert outbox.submitted == [("00000001", 105)]


def test_a_roster_answer_older_than_our_mark_does_not_erase_it(tmp_path, clocks):
    class Racing(FakeServer):
        """Answers the roster as it was before a camera mark that is made and delivered meanwhile."""

        race = False

        def students(self, *args):
            answer = super().students(*args)
            if self.race:
                self.race = False
                assert session.on_recognised("00000001", 88) == "marked"
                assert box.flush(5.0)
            return answer

    server = Racing(ROWS)
    box = Outbox(tmp_path, client_for=lambda teacher: server, clock=clocks.monotonic)
    session = ClassSession(server, box, teacher="teacher", lesson_guid=GUID, class_id=CLASS_ID,
                           embedding_method=METHOD, clock=clocks.wall, monotonic=clocks.monotonic)
    session.load_roster()
    box.start()
    server.race = True
    session.refresh_roster()
    assert server.rows["00000001"][3] == 88 and row(session, "00000001")["confidence"] == 88
    clocks.advance(1)
    session.refresh_roster()
    assert has(row(session, "00000001"), confidence=88, source="camera")
    box.stop(flush_timeout=0)
