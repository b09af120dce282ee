"""Regression tests for the review findings on the control plane and the teacher page (races, leaks, limits)."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from kiosk.app import Kiosk
from kiosk.errors import LoginFailed
from kiosk.outbox import DeadLetter, Mark
from kiosk.web import create_app
from tests.fixtures.sandbox import DEMO_CLASS_ID, DEMO_LOGIN, DEMO_MODULE_ID
from tests.test_app import Decision, parts  # noqa: F401 (fixture)
from tests.test_web_api import (  # noqa: F401 (fixtures)
    MONDAY_GUID,
    OTHER_LOGIN,
    Clock,
    FakeEngine,
    app,
    clock,
    kiosk,
    kiosk_engine,
    log_in,
    settings,
    start_class,
    web,
)
from tests.test_web_events import frames, parse


# --- finding 4: the same teacher logs back in during a class ------------------------------------
def test_the_same_teacher_logs_back_in_during_a_class_after_the_tokens_were_lost(parts, sandbox):  # noqa: F811
    kio = parts.kiosk
    kio.login(*DEMO_LOGIN)
    kio.start_class(MONDAY_GUID, DEMO_CLASS_ID, DEMO_MODULE_ID, 1)
    sandbox.state.revoke_refresh_tokens()
    kio._client._auth._expires_at = 0                          # the access token expired too
    with pytest.raises(Exception):                               # noqa: B017 (the refresh fails: tokens forgotten)
        kio.modules()
    assert kio.teacher is None and kio.session() is not None
    assert kio.login(*DEMO_LOGIN) == DEMO_LOGIN[0]             # no "another teacher is running a class"
    assert kio.teacher == DEMO_LOGIN[0] and kio.session() is not None
    assert kio.modules()                                       # the fresh tokens are in use


def test_another_teacher_still_needs_a_takeover_while_the_first_ones_tokens_are_lost(parts, sandbox):  # noqa: F811
    from kiosk.errors import ClassInProgress

    kio = parts.kiosk
    kio.login(*DEMO_LOGIN)
    kio.start_class(MONDAY_GUID, DEMO_CLASS_ID)
    kio._client.logout()                                       # tokens lost
    with pytest.raises(ClassInProgress):
        kio.login(*OTHER_LOGIN)
    assert kio.session() is not None


# --- finding 6: vectors enrolled elsewhere reach the running camera --------------------------------
def test_vectors_that_change_during_a_class_reach_the_camera_on_the_next_tick(parts):  # noqa: F811
    kio = parts.kiosk
    kio.login(*DEMO_LOGIN)
    snap = kio.start_class(MONDAY_GUID, DEMO_CLASS_ID)
    user = next(s["userId"] for s in snap["students"] if not s["enrolled"])
    pipeline = parts.made[0]
    assert user not in pipeline.galleries[-1]
    kio._session.set_student_vectors(user, np.ones((1, 192), np.float32))   # e.g. a roster refresh found them
    kio.tick()
    assert user in pipeline.galleries[-1]
    count = len(pipeline.galleries)
    kio.tick()
    assert len(pipeline.galleries) == count                      # unchanged vectors: the gallery is not rebuilt


# --- finding 7: the embedder's vector length reaches the class -------------------------------------
@pytest.mark.parametrize(("embedder", "dim"), [("dlib", 128), ("mobilefacenet", 192)])
def test_the_class_reads_vectors_of_the_configured_embedders_length(sandbox, tmp_path, embedder, dim):
    from kiosk.config import load_settings

    s = load_settings(env={"KIOSK_API_URL": sandbox.url, "KIOSK_STATE_DIR": str(tmp_path), "KIOSK_EMBEDDER": embedder})
    seen = {}

    def session_factory(client, outbox, **kwargs):
        seen.update(kwargs)
        from kiosk.attendance import ClassSession

        return ClassSession(client, outbox, **kwargs)

    with Kiosk(s, session_factory=session_factory, clock=Clock().wall, tick_seconds=3600,
               outbox=RecordingOutbox.quiet()) as kio:
        kio.login(*DEMO_LOGIN)
        kio.start_class(MONDAY_GUID, DEMO_CLASS_ID)
        assert seen["embedding_dim"] == dim


# --- finding 10: a camera failing in any way leaves a running class and a clean answer -----------
@pytest.mark.parametrize("where", ["factory", "start"])
def test_a_camera_failing_with_any_error_leaves_the_class_running_without_a_pipeline(parts, capsys, where):  # noqa: F811
    def broken(*, on_decision):
        if where == "factory":
            raise ValueError("student 00019880 bad")
        return SimpleNamespace(start=lambda g: (_ for _ in ()).throw(RuntimeError("student 00019880 bad")),
                               stop=lambda: None, stats=lambda: {})

    parts.kiosk._pipeline_factory = broken
    parts.kiosk.login(*DEMO_LOGIN)
    snap = parts.kiosk.start_class(MONDAY_GUID, DEMO_CLASS_ID)
    assert snap["students"] and parts.kiosk.session() is not None
    assert parts.kiosk.status()["camera"]["state"] == "off"
    out = capsys.readouterr().out
    assert "camera pipeline did not start" in out and "00019880" not in out


# --- finding 16/17: shutdown budget and the engine ----------------------------------------------
class RecordingOutbox:
    """An outbox that records how long the kiosk lets it flush and whether the tick thread still ran."""

    def __init__(self):
        self.flushes: list[tuple[float, bool]] = []
        self.ticker = None

    @classmethod
    def quiet(cls) -> RecordingOutbox:
        outbox = cls()
        outbox.ticker = SimpleNamespace(is_alive=lambda: False)
        return outbox

    def flush(self, timeout, teacher=None):
        self.flushes.append((timeout, self.ticker.is_alive()))
        return True

    def pending_for(self, *a):
        return None

    def pending(self):
        return []

    def submit(self, mark):
        return 1


def test_close_flushes_within_its_deadline_before_waiting_for_a_stuck_tick(settings, clock):  # noqa: F811
    outbox = RecordingOutbox()
    release = threading.Event()
    kio = Kiosk(settings, outbox=outbox, clock=clock.wall, tick_seconds=0.01)
    outbox.ticker = kio._ticker
    kio.login(*DEMO_LOGIN)
    entered = threading.Event()

    def stuck_tick():
        entered.set()
        release.wait(10)                                         # a roster refresh that hangs

    kio.tick = stuck_tick
    assert entered.wait(5)
    try:
        kio.close(timeout=2.0)
    finally:
        release.set()
    (budget, ticker_alive), = outbox.flushes
    assert budget <= 2.0 and ticker_alive                        # flushed first, with what was left of 2 s
    assert kio.teacher is None


def test_close_closes_the_engine_it_built_but_not_one_it_was_given(settings, clock, monkeypatch):  # noqa: F811
    from kiosk.model import engine as engine_module

    class ClosingEngine(FakeEngine):
        closed = 0

        def close(self):
            self.closed += 1

    built = ClosingEngine()
    monkeypatch.setattr(engine_module.Engine, "from_settings", classmethod(lambda cls, s: built))
    kio = Kiosk(settings, clock=clock.wall, tick_seconds=3600)
    assert kio.engine is built
    kio.close()
    kio.close()
    assert built.closed == 1
    given = ClosingEngine()
    Kiosk(settings, engine=given, clock=clock.wall, tick_seconds=3600).close()
    assert given.closed == 0


# --- finding 3: live updates stop for a page that is no longer logged in -------------------------
def test_a_page_taken_over_gets_a_logout_event_and_no_other_teachers_events(app, kiosk):  # noqa: F811
    app.extensions["kiosk"].heartbeat = 2.0                      # the old code re-checked only when idle
    page_a, page_b = app.test_client(), app.test_client()
    log_in(page_a)
    response = page_a.get("/api/events", buffered=False)
    chunks = frames(response)
    next(chunks), next(chunks)                                   # retry, snapshot
    log_in(page_b, OTHER_LOGIN)                                  # teacher B takes the kiosk
    for n in range(3):
        kiosk.events.publish("student", {"userId": f"0001{n:04d}", "fullName": "Secret Name"})
    names = [parse(c)[0] for c in chunks]
    assert names[0] == "logout" and "student" not in names
    assert app.extensions["kiosk"].streams.open == 0             # the stream's place is free again
    response.close()


def test_a_page_receives_only_its_own_teachers_outbox_news(app, web, kiosk):  # noqa: F811
    log_in(web)
    response = web.get("/api/events", buffered=False)
    chunks = frames(response)
    next(chunks), next(chunks)
    mine, theirs = _letters()
    kiosk.events.publish("outbox", {"pending": 2, "loginRequired": ["other.teacher", "teacher"],
                                    "deadLetters": [mine.to_json(), theirs.to_json()]})
    name, data = parse(next(chunks))
    assert name == "outbox" and data["loginRequired"] == ["teacher"]
    assert [d["userId"] for d in data["deadLetters"]] == ["00019880"]
    response.close()


# --- finding 13: refused marks of other teachers stay hidden -------------------------------------
def _letters():
    mine = DeadLetter(Mark(DEMO_CLASS_ID, "00019880", 87, "teacher", 0.0), 400, "Refused.", 0.0)
    theirs = DeadLetter(Mark(999, "00077777", 105, "other.teacher", 0.0), 400, "Refused.", 0.0)
    return mine, theirs


def test_status_lists_only_the_logged_in_teachers_refused_marks(web, kiosk, monkeypatch):  # noqa: F811
    mine, theirs = _letters()
    monkeypatch.setattr(kiosk.outbox, "dead_letters", lambda **kw: [mine, theirs])
    log_in(web)
    letters = web.get("/api/status").get_json()["deadLetters"]
    assert [d["userId"] for d in letters] == ["00019880"]


# --- finding 18: a refused mark can be sent again from the page ----------------------------------
def test_a_teacher_can_retry_their_own_refused_mark_but_not_another_teachers(web, kiosk, monkeypatch):  # noqa: F811
    mine, theirs = _letters()
    kiosk.outbox._dead.update({mine.mark.key: mine, theirs.mark.key: theirs})
    token = log_in(web)
    retried = []
    monkeypatch.setattr(kiosk.outbox, "submit", lambda mark: retried.append(mark) or 1)
    headers = {"X-CSRF-Token": token}
    response = web.post("/api/outbox/retry", headers=headers, json={"classId": 999, "userId": "00077777"})
    assert response.status_code == 404 and retried == []
    response = web.post("/api/outbox/retry", headers=headers, json={"classId": DEMO_CLASS_ID, "userId": "00019880"})
    assert response.status_code == 202 and [m.user_id for m in retried] == ["00019880"]
    response = web.post("/api/outbox/retry", headers=headers, json={"classId": DEMO_CLASS_ID, "userId": "00019880"})
    assert response.status_code == 404                           # already queued again


# --- finding 12 ------------------------------------------------------------------------------------
def test_starting_a_class_with_an_unknown_teaching_type_is_refused(web, kiosk):  # noqa: F811
    token = log_in(web)
    response = web.post("/api/session", headers={"X-CSRF-Token": token},
                        json={"lessonGuid": MONDAY_GUID, "classId": DEMO_CLASS_ID, "moduleId": DEMO_MODULE_ID,
                              "teachingType": 7})
    assert response.status_code == 400 and "teachingType" in response.get_json()["error"]
    assert kiosk.session() is None


# --- finding 11: parallel wrong logins --------------------------------------------------------------
class SlowWrongClient:
    """A university login that takes a while and always refuses; counts the attempts that reached it."""

    calls = 0
    lock = threading.Lock()
    username = None
    logged_in = False

    def login(self, username, password):
        with SlowWrongClient.lock:
            SlowWrongClient.calls += 1
        time.sleep(0.2)
        raise LoginFailed("Wrong username or password.")

    def logout(self):
        pass


def test_parallel_wrong_logins_reach_the_university_at_most_five_times_a_minute(settings, clock):  # noqa: F811
    SlowWrongClient.calls = 0
    with Kiosk(settings, client_factory=SlowWrongClient, clock=clock.wall, tick_seconds=3600) as kio:
        flask_app = create_app(kio, testing=True, monotonic=clock.monotonic)
        codes: list[int] = []
        start = threading.Barrier(16)

        def guess(n):
            client = flask_app.test_client()
            start.wait(5)
            codes.append(client.post("/api/login", json={"username": "teacher", "password": f"guess-{n}"}).status_code)

        threads = [threading.Thread(target=guess, args=(n,)) for n in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    assert settings.login_attempts_per_minute == 5
    assert SlowWrongClient.calls <= 5
    assert codes.count(401) == SlowWrongClient.calls and codes.count(429) == 16 - SlowWrongClient.calls


# --- a bug inside a request: a plain 500 and no student data on stderr ----------------------------
def test_an_unexpected_error_is_a_plain_500_without_its_text_on_stderr(web, kiosk, capsys, monkeypatch):  # noqa: F811
    token = log_in(web)
    start_class(web, token)

    def boom(*args, **kwargs):
        raise ValueError("student 00019880 Secret Name")

    monkeypatch.setattr(kiosk, "mark", boom)
    response = web.post("/api/session/marks", headers={"X-CSRF-Token": token}, json={"userId": "00019880",
                                                                                    "present": True})
    assert response.status_code == 500
    assert response.get_json() == {"error": "Something went wrong inside the kiosk."}
    out = capsys.readouterr()
    assert "ValueError" in out.out and "00019880" not in out.out + out.err and "Secret" not in out.out + out.err


# --- a slow roster does not hold the control plane ----------------------------------------------
@pytest.fixture
def slow_roster(monkeypatch):
    """ClassSession.load_roster waits for ``release`` (set ``reading`` when it starts): a slow university."""
    from kiosk.attendance import ClassSession

    gate = SimpleNamespace(reading=threading.Event(), release=threading.Event())
    original = ClassSession.load_roster

    def load_roster(self):
        gate.reading.set()
        assert gate.release.wait(10)
        return original(self)

    monkeypatch.setattr(ClassSession, "load_roster", load_roster)
    yield gate
    gate.release.set()


def _start_in_background(kio):
    outcome = {}

    def run():
        try:
            outcome["snapshot"] = kio.start_class(MONDAY_GUID, DEMO_CLASS_ID, DEMO_MODULE_ID, 1)
        except Exception as exc:  # the test looks at which
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def test_a_logout_while_the_roster_loads_is_not_held_up_and_the_class_does_not_start(parts, slow_roster):  # noqa: F811
    from kiosk.errors import ClassAlreadyRunning, LoginRequired

    kio = parts.kiosk
    kio.login(*DEMO_LOGIN)
    thread, outcome = _start_in_background(kio)
    assert slow_roster.reading.wait(5)
    with pytest.raises(ClassAlreadyRunning):                    # one class at a time, also while starting
        kio.start_class(MONDAY_GUID, DEMO_CLASS_ID)
    assert kio.modules()                                       # the university is still reachable meanwhile
    done = threading.Event()
    threading.Thread(target=lambda: (kio.logout(), done.set())).start()
    assert done.wait(5), "logout waited for the roster"
    slow_roster.release.set()                                  # the roster arrives after the logout
    thread.join(10)
    assert isinstance(outcome.get("error"), LoginRequired) and "snapshot" not in outcome
    assert kio.session() is None and kio.teacher is None and parts.made == []   # no camera was opened


def test_another_teacher_needs_a_takeover_while_a_class_is_starting(parts, slow_roster):  # noqa: F811
    from kiosk.errors import ClassInProgress

    kio = parts.kiosk
    kio.login(*DEMO_LOGIN)
    thread, outcome = _start_in_background(kio)
    assert slow_roster.reading.wait(5)
    with pytest.raises(ClassInProgress):
        kio.login(*OTHER_LOGIN)
    slow_roster.release.set()
    thread.join(10)
    assert outcome["snapshot"]["classId"] == DEMO_CLASS_ID and kio.teacher == DEMO_LOGIN[0]
    assert kio.session() is not None and len(parts.made) == 1


def test_two_enrolments_of_one_student_at_once_keep_both_photos(parts, sandbox, monkeypatch):  # noqa: F811
    from kiosk.model.embedding_format import decode
    from kiosk.wiut.client import WiutClient
    from tests.test_web_api import METHOD, png

    kio = parts.kiosk
    kio.login(*DEMO_LOGIN)
    snap = kio.start_class(MONDAY_GUID, DEMO_CLASS_ID)
    user = next(s["userId"] for s in snap["students"] if not s["enrolled"])
    original = WiutClient.set_embedding

    def slow_set_embedding(self, *args, **kwargs):  # a slow university: the second request arrives meanwhile
        time.sleep(0.3)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(WiutClient, "set_embedding", slow_set_embedding)
    results = []
    threads = [threading.Thread(target=lambda v=v: results.append(kio.enroll(user, [png(v)]))) for v in (120, 200)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(results) == [1, 2]                           # the second one sent the first one's vector too
    assert len(kio._session.gallery()[user]) == 2
    stored = decode(sandbox.state.embedding(user, METHOD), method=METHOD, dim=192)
    assert stored.shape == (2, 192)                            # the university keeps both photos' vectors
