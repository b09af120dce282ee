"""Outbox: coalescing, retry classes, dead letters, waiting for a login, flush on stop, the spool."""

import functools
import json
import random
import stat
import threading
import time

import pytest

from kiosk import spool
from kiosk.errors import LoginRequired, SpoolError, UpstreamRejected, UpstreamUnavailable
from kiosk.events import EventBus
from kiosk.outbox import Mark, Outbox, backoff_delay
from tests import helpers

wait_for = functools.partial(helpers.wait_for, timeout=5.0)  # this module's bound on waiting

TEACHER = "teacher"


class FakeClock:
    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now


class FakeClient:
    """Records set_attendance calls; raises the scripted exceptions first; can hold a call open."""

    def __init__(self, *script):
        self.script = list(script)
        self.calls = []
        self.delivered = {}
        self.hold = None  # threading.Event: the first call waits for it
        self.in_call = threading.Event()

    def set_attendance(self, class_id, user_id, confidence):
        self.calls.append((class_id, user_id, confidence))
        if self.hold is not None and not self.in_call.is_set():
            self.in_call.set()
            self.hold.wait(5)
        if self.script:
            exc = self.script.pop(0)
            if exc is not None:
                raise exc
        self.delivered[(class_id, user_id)] = confidence


def mark(user="00000001", confidence=87, class_id=46703, teacher=TEACHER):
    return Mark(class_id, user, confidence, teacher, 1_764_835_200.0)


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def make_outbox(tmp_path, clock):
    made = []

    def make(client=None, *, clients=None, client_for=None, **kw):
        clients = clients if clients is not None else {TEACHER: client}
        box = Outbox(tmp_path / "state", client_for=client_for or (lambda t: clients.get(t)), clock=clock,
                     rng=random.Random(1), **kw)
        made.append(box)
        return box

    yield make
    for box in made:
        box.stop(flush_timeout=0)


def unavailable(status=503):
    return UpstreamUnavailable(f"The university API answered {status}.", call="SetAttendanceStudent", status=status)


def test_a_mark_is_delivered_and_leaves_the_queue(make_outbox):
    client = FakeClient()
    bus = EventBus()
    sub = bus.subscribe()
    box = make_outbox(client, events=bus)
    box.submit(mark(confidence=87))
    box.start()
    wait_for(lambda: not box.pending())
    assert client.delivered == {(46703, "00000001"): 87}
    assert box.healthy
    names = []
    while (event := sub.get(timeout=0)) is not None:
        names.append((event.name, event.data["pending"]))
    assert names[0] == ("outbox", 1) and names[-1] == ("outbox", 0)


def test_newest_mark_of_a_student_wins_and_only_it_is_sent(make_outbox):
    client = FakeClient()
    box = make_outbox(client)
    box.submit(mark(confidence=51))
    box.submit(mark(confidence=-1))
    box.submit(mark(user="00000002", confidence=90))
    assert [m.confidence for m in box.pending()] == [-1, 90]
    box.start()
    wait_for(lambda: not box.pending())
    assert client.calls == [(46703, "00000001", -1), (46703, "00000002", 90)]


def test_failing_delivery_of_an_older_mark_does_not_replace_a_newer_one(make_outbox, clock):
    client = FakeClient(unavailable(), None)
    client.hold = threading.Event()
    box = make_outbox(client)
    box.submit(mark(confidence=80))
    box.start()
    assert client.in_call.wait(5)
    box.submit(mark(confidence=-1))  # the teacher marks absent while 80 is in flight
    client.hold.set()
    wait_for(lambda: box.status()["upstreamDown"])
    assert [m.confidence for m in box.pending()] == [-1]
    clock.now += 120
    box.wake()
    wait_for(lambda: not box.pending())
    assert client.calls == [(46703, "00000001", 80), (46703, "00000001", -1)]
    assert client.delivered[(46703, "00000001")] == -1


def test_successful_delivery_of_an_older_mark_keeps_the_newer_one_queued(make_outbox):
    client = FakeClient()
    client.hold = threading.Event()
    box = make_outbox(client)
    box.submit(mark(confidence=80))
    box.start()
    assert client.in_call.wait(5)
    box.submit(mark(confidence=105))
    client.hold.set()
    wait_for(lambda: not box.pending())
    assert client.delivered[(46703, "00000001")] == 105


def test_unavailable_upstream_is_retried_with_backoff_until_delivered(make_outbox, clock):
    client = FakeClient(unavailable(503), unavailable(None), None)
    box = make_outbox(client)
    box.submit(mark())
    box.start()
    wait_for(lambda: len(client.calls) == 1 and box.status()["upstreamDown"])
    status = box.status()
    assert not box.healthy and status["pending"] == 1 and status["lastError"]
    assert 0.5 <= status["retryIn"] <= 1.0  # the first backoff: base 1 s, half of it jitter
    clock.now += 1.0
    box.wake()
    wait_for(lambda: len(client.calls) == 2 and (box.status()["retryIn"] or 0) > 0)
    assert 1.0 <= box.status()["retryIn"] <= 2.0  # doubled
    clock.now += 2.0
    box.wake()
    wait_for(lambda: not box.pending())
    assert box.healthy and box.status()["lastError"] is None
    assert len(client.calls) == 3


def test_backoff_doubles_with_jitter_and_is_capped():
    rng = random.Random(7)
    delays = [backoff_delay(n, 1.0, 60.0, rng) for n in range(1, 12)]
    for n, d in enumerate(delays, start=1):
        ceiling = min(60.0, 2.0 ** (n - 1))
        assert ceiling / 2 <= d <= ceiling
    assert max(delays) <= 60.0
    assert backoff_delay(10_000, 1.0, 60.0, rng) <= 60.0


def test_retry_after_is_honoured(make_outbox):
    exc = unavailable(429)
    exc.retry_after = 120.0
    client = FakeClient(exc)
    box = make_outbox(client)
    box.submit(mark())
    box.start()
    wait_for(lambda: box.status()["retryIn"] is not None)
    assert box.status()["retryIn"] == pytest.approx(120.0)


def test_a_refusal_goes_to_the_dead_letters_and_is_not_retried(make_outbox, clock):
    client = FakeClient(UpstreamRejected("The university API refused SetAttendanceStudent (400).",
                                         call="SetAttendanceStudent", status=400))
    box = make_outbox(client)
    box.submit(mark(confidence=77))
    box.start()
    wait_for(lambda: box.dead_letters())
    letter = box.dead_letters()[0]
    assert (letter.mark.confidence, letter.status) == (77, 400)
    assert not box.pending() and box.healthy
    clock.now += 3600
    box.wake()
    assert box.flush(1.0)
    assert len(client.calls) == 1
    shown = box.status()["deadLetters"][0]
    assert shown["userId"] == "00000001" and shown["status"] == 400 and "refused" in shown["reason"]
    assert box.retry_dead_letter(46703, "00000001")  # the teacher asks: sent again (the fake now accepts)
    wait_for(lambda: client.delivered)
    assert not box.dead_letters()


def test_login_required_keeps_the_marks_until_the_teacher_logs_in(make_outbox):
    client = FakeClient(LoginRequired("The university login has expired: log in again.", status=401))
    box = make_outbox(client)
    box.submit(mark(confidence=105))
    box.start()
    wait_for(lambda: box.status()["loginRequired"] == [TEACHER])
    assert not box.healthy and [m.confidence for m in box.pending()] == [105]
    box.teacher_logged_in(TEACHER)
    wait_for(lambda: not box.pending())
    assert client.delivered == {(46703, "00000001"): 105}
    assert box.healthy


def test_marks_of_a_teacher_who_is_not_logged_in_wait(make_outbox):
    client = FakeClient()
    clients = {}
    box = make_outbox(clients=clients)
    box.submit(mark())
    box.start()
    assert box.flush(2.0)  # nothing deliverable: returns without waiting for the absent teacher
    assert len(box.pending()) == 1 and box.healthy
    clients[TEACHER] = client
    box.teacher_logged_in(TEACHER)
    wait_for(lambda: not box.pending())
    assert client.delivered


def test_flush_for_one_teacher(make_outbox):
    a, b = FakeClient(), FakeClient()
    box = make_outbox(clients={"a": a, "b": b})
    box.submit(mark(user="1", teacher="a"))
    box.submit(mark(user="2", teacher="b"))
    box.start()
    assert box.flush(5.0, teacher="a")
    assert (46703, "1") in a.delivered


def test_stop_delivers_what_it_can_and_leaves_no_spool(make_outbox):
    client = FakeClient()
    box = make_outbox(client)
    box.start()
    for n in range(5):
        box.submit(mark(user=f"0000000{n}"))
    assert box.stop(flush_timeout=5.0) == 0
    assert len(client.delivered) == 5
    assert not box.spool_path.exists()


def test_stop_spools_what_could_not_be_delivered(make_outbox):
    client = FakeClient(*[unavailable() for _ in range(100)])
    box = make_outbox(client)
    box.start()
    box.submit(mark(user="00000001", confidence=-1))
    box.submit(mark(user="00000002", confidence=64))
    assert box.stop(flush_timeout=0.3) == 2
    assert stat.S_IMODE(box.spool_path.stat().st_mode) == 0o600
    data = json.loads(box.spool_path.read_text())
    assert data["version"] == 1
    assert [set(m) for m in data["marks"]] == [{"userId", "classId", "confidence", "teacher", "created"}] * 2
    assert [(m["userId"], m["confidence"], m["teacher"]) for m in data["marks"]] == [
        ("00000001", -1, TEACHER), ("00000002", 64, TEACHER)]
    assert list(box.spool_path.parent.iterdir()) == [box.spool_path]  # no temporary file left
    assert box.stop() == 2  # idempotent


def test_stop_keeps_its_budget_when_a_delivery_hangs_and_spools_that_mark(make_outbox):
    client = FakeClient()
    client.hold = threading.Event()           # the upstream call never answers while we stop
    box = make_outbox(client)
    box.start()
    box.submit(mark(user="00000001", confidence=87))
    assert client.in_call.wait(5)
    started = time.monotonic()
    assert box.stop(flush_timeout=0.2) == 1
    # SIGTERM's flush budget is the whole budget: no extra second waiting for the hung call (was 0.2 + 1 s).
    assert time.monotonic() - started < 1.1
    assert [m["userId"] for m in json.loads(box.spool_path.read_text())["marks"]] == ["00000001"]
    client.hold.set()


def test_a_new_outbox_delivers_the_spool_after_that_teacher_logs_in(make_outbox):
    first = make_outbox(clients={})
    first.submit(mark(user="00000001", confidence=105))
    first.submit(mark(user="00000002", confidence=-1))
    assert first.stop(flush_timeout=0) == 2

    client = FakeClient()
    clients = {}
    second = make_outbox(clients=clients)
    assert second.load_spool() == 2
    second.start()
    assert second.flush(2.0)
    assert second.spool_path.exists() and not client.calls  # the teacher is not logged in yet
    clients[TEACHER] = client
    second.teacher_logged_in(TEACHER)
    wait_for(lambda: not second.pending())
    assert client.delivered == {(46703, "00000001"): 105, (46703, "00000002"): -1}
    assert not second.spool_path.exists()
    assert second.stop() == 0


def test_the_spool_shrinks_as_its_marks_are_delivered(make_outbox, tmp_path):
    path = tmp_path / "state" / spool.SPOOL_NAME
    spool.write(path, [mark(user="1", teacher="a"), mark(user="2", teacher="b")])
    a = FakeClient()
    box = make_outbox(clients={"a": a})
    assert box.load_spool() == 2
    box.start()
    wait_for(lambda: a.delivered)
    wait_for(lambda: [m.user_id for m in spool.read(path)] == ["2"])


def test_a_spooled_mark_replaced_by_a_newer_one_is_not_resent_later(make_outbox, tmp_path):
    path = tmp_path / "state" / spool.SPOOL_NAME
    spool.write(path, [mark(confidence=70)])
    client = FakeClient()
    box = make_outbox(client)
    box.load_spool()
    box.submit(mark(confidence=-1))
    box.start()
    wait_for(lambda: not box.pending())
    assert client.calls == [(46703, "00000001", -1)]
    assert not path.exists()


def test_stop_without_loading_keeps_the_marks_already_spooled(make_outbox, tmp_path):
    path = tmp_path / "state" / spool.SPOOL_NAME
    spool.write(path, [mark(user="1", confidence=105)])
    box = make_outbox(clients={})
    box.submit(mark(user="2", confidence=90))
    assert box.stop(flush_timeout=0) == 2
    assert {m.user_id for m in spool.read(path)} == {"1", "2"}


@pytest.mark.parametrize("text", ["{not json", '{"version": 9, "marks": []}', '[1, 2]',
                                  '{"version": 1, "marks": [{"userId": 5}]}'])
def test_an_unreadable_spool_is_ignored(make_outbox, tmp_path, text):
    path = tmp_path / "state" / spool.SPOOL_NAME
    path.parent.mkdir()
    path.write_text(text)
    box = make_outbox(FakeClient())
    assert box.load_spool() == 0


def test_spool_write_failure_is_a_spool_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SpoolError, match="cannot be written"):
        spool.write(blocker / "sub" / spool.SPOOL_NAME, [mark()])


def test_a_mark_never_shows_the_student_id_in_its_repr():
    assert "00000001" not in repr(mark()) and TEACHER not in repr(mark())


def test_a_failing_client_for_callback_does_not_stop_the_worker(make_outbox, clock):
    client = FakeClient()
    calls = []

    def client_for(teacher):
        calls.append(teacher)
        if len(calls) == 1:
            raise RuntimeError("owner bug")
        return client

    box = make_outbox(client_for=client_for)
    box.submit(mark())
    box.start()

    def retried():
        clock.now += 10  # past the re-check of an absent teacher
        box.wake()
        return client.delivered

    wait_for(retried)
    assert len(calls) >= 2


def test_health_listeners_hear_each_change_once(make_outbox, clock):
    client = FakeClient(unavailable(), unavailable())
    box = make_outbox(client, backoff_base=0.01, backoff_cap=0.02)
    heard = []
    box.on_health_change(heard.append)
    box.submit(mark())
    box.start()
    wait_for(lambda: heard == [False])             # the API is down: marks cannot be recorded
    while client.script:
        clock.now += 1.0
        box.wake()
        time.sleep(0.005)
    clock.now += 1.0
    box.wake()
    wait_for(lambda: client.delivered)
    wait_for(lambda: heard == [False, True])       # told once per change, not per failure


def test_a_listener_added_while_unhealthy_hears_it_at_once_and_a_broken_one_is_harmless(make_outbox):
    box = make_outbox(FakeClient(LoginRequired("The university login has expired: log in again.", status=401)))

    def broken(healthy):
        raise RuntimeError("listener bug")

    box.on_health_change(broken)
    box.submit(mark())
    box.start()
    wait_for(lambda: not box.healthy)
    heard = []
    box.on_health_change(heard.append)
    assert heard == [False]
