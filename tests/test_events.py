"""EventBus: ordered ids, bounded queues that drop the oldest, close ends every stream."""

import json
import threading

from kiosk.events import EventBus


def test_subscriber_gets_events_in_order_with_increasing_ids():
    bus = EventBus()
    with bus.subscribe() as sub:
        bus.publish("student", {"n": 1})
        bus.publish("outbox", {"n": 2})
        first, second = sub.get(timeout=1), sub.get(timeout=1)
    assert (first.name, first.data, second.name, second.data) == ("student", {"n": 1}, "outbox", {"n": 2})
    assert second.id == first.id + 1


def test_get_times_out_with_none_while_open():
    with EventBus() as bus, bus.subscribe() as sub:
        assert sub.get(timeout=0.01) is None
        assert not sub.closed


def test_full_queue_drops_the_oldest_and_counts_it():
    bus = EventBus()
    sub = bus.subscribe(maxsize=3)
    for n in range(5):
        bus.publish("tick", {"n": n})
    got = [sub.get(timeout=0).data["n"] for _ in range(3)]
    assert got == [2, 3, 4]
    assert sub.dropped == 2
    assert sub.get(timeout=0) is None


def test_publish_does_not_wait_for_a_reader_that_never_reads():
    bus = EventBus()
    slow = bus.subscribe(maxsize=1)
    fast = bus.subscribe(maxsize=1000)
    for n in range(500):
        bus.publish("tick", {"n": n})
    assert slow.dropped == 499
    assert fast.dropped == 0 and fast.get(timeout=0).data == {"n": 0}


def test_close_ends_every_stream_and_wakes_waiting_readers():
    bus = EventBus()
    subs = [bus.subscribe() for _ in range(3)]
    results = []
    readers = [threading.Thread(target=lambda s=s: results.append(s.get(timeout=None))) for s in subs]
    for r in readers:
        r.start()
    bus.close()
    for r in readers:
        r.join(5)
    assert results == [None, None, None]
    assert all(s.closed for s in subs)
    assert bus.subscriber_count == 0
    bus.close()  # idempotent


def test_queued_events_are_still_read_after_close():
    bus = EventBus()
    sub = bus.subscribe()
    bus.publish("session", {"state": "ended"})
    bus.close()
    assert sub.get(timeout=0).data == {"state": "ended"}
    assert sub.get(timeout=None) is None


def test_subscribe_after_close_is_already_closed_and_publish_reaches_nobody():
    bus = EventBus()
    bus.close()
    sub = bus.subscribe()
    bus.publish("student", {})
    assert sub.closed and sub.get(timeout=None) is None
    assert bus.subscriber_count == 0


def test_closing_one_subscription_leaves_the_others():
    bus = EventBus()
    a, b = bus.subscribe(), bus.subscribe()
    assert bus.subscriber_count == 2
    a.close()
    a.close()
    bus.publish("x", {"k": 1})
    assert bus.subscriber_count == 1
    assert b.get(timeout=0).data == {"k": 1}
    assert a.get(timeout=0) is None


def test_sse_frame():
    bus = EventBus()
    event = bus.publish("student", {"fullName": "Ali Valiyev", "present": True})
    lines = event.sse().split("\n")
    assert lines[0] == f"id: {event.id}"
    assert lines[1] == "event: student"
    assert json.loads(lines[2].removeprefix("data: ")) == {"fullName": "Ali Valiyev", "present": True}
    assert event.sse().endswith("\n\n")


def test_many_publishers_every_event_arrives_once():
    bus = EventBus()
    sub = bus.subscribe(maxsize=10_000)
    threads = [threading.Thread(target=lambda t=t: [bus.publish("p", {"t": t, "n": n}) for n in range(200)])
               for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    ids = []
    while (event := sub.get(timeout=0)) is not None:
        ids.append(event.id)
    assert sorted(ids) == ids and len(set(ids)) == 800
