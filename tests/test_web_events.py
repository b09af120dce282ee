"""Live updates over Server-Sent Events: snapshot on connect, events, heartbeats, the stream cap, shutdown."""

from __future__ import annotations

import json

import pytest

from tests.test_web_api import (  # noqa: F401 (fixtures)
    app,
    clock,
    kiosk,
    kiosk_engine,
    log_in,
    settings,
    start_class,
    web,
)


def frames(response):
    """The stream's chunks as they come (the test client does not buffer a streamed answer)."""
    return (c.decode() if isinstance(c, bytes) else c for c in response.response)


def parse(chunk: str) -> tuple[str | None, dict | None]:
    lines = dict(line.split(": ", 1) for line in chunk.strip().splitlines() if ": " in line and line[0] != ":")
    data = json.loads(lines["data"]) if "data" in lines else None
    return lines.get("event"), data


@pytest.fixture
def fast_heartbeat(app):  # noqa: F811
    app.extensions["kiosk"].heartbeat = 0.05
    return app


def test_a_stream_starts_with_a_full_snapshot_then_carries_live_events(web, kiosk):  # noqa: F811
    token = log_in(web)
    snap = start_class(web, token)
    response = web.get("/api/events", buffered=False)
    assert response.status_code == 200
    assert response.mimetype == "text/event-stream"
    chunks = frames(response)
    assert next(chunks).startswith("retry:")
    name, data = parse(next(chunks))
    assert name == "snapshot"
    assert data["session"]["classId"] == snap["classId"] and data["status"]["teacher"] == "teacher"
    user = next(s["userId"] for s in snap["students"] if s["source"] is None)
    kiosk._session.on_recognised(user, 77)
    name, data = next((n, d) for n, d in map(parse, chunks) if n == "student")       # "outbox" events come too
    assert data["userId"] == user and data["present"] is True and data["confidence"] == 77
    response.close()


def test_heartbeats_keep_an_idle_stream_alive(fast_heartbeat, web):  # noqa: F811
    log_in(web)
    response = web.get("/api/events", buffered=False)
    chunks = frames(response)
    next(chunks), next(chunks)
    assert next(chunks) == ": heartbeat\n\n"
    response.close()


def test_one_stream_over_the_cap_is_refused_at_once_and_a_closed_one_frees_its_place(app, web):  # noqa: F811
    log_in(web)
    cap = app.extensions["kiosk"].streams.cap
    open_streams = [web.get("/api/events", buffered=False) for _ in range(cap)]
    assert all(r.status_code == 200 for r in open_streams)
    refused = web.get("/api/events", buffered=False)
    assert refused.status_code == 503
    assert "Too many live pages" in refused.get_json()["error"]
    open_streams.pop().close()
    again = web.get("/api/events", buffered=False)
    assert again.status_code == 200
    for r in [*open_streams, again]:
        r.close()
    assert app.extensions["kiosk"].streams.open == 0


def test_streams_end_on_shutdown(web, kiosk):  # noqa: F811
    log_in(web)
    response = web.get("/api/events", buffered=False)
    chunks = frames(response)
    next(chunks), next(chunks)
    kiosk.events.close()
    assert list(chunks) == []
    response.close()


def test_a_stream_ends_with_a_logout_event_when_the_teacher_logs_out(fast_heartbeat, web, kiosk):  # noqa: F811
    log_in(web)
    response = web.get("/api/events", buffered=False)
    chunks = frames(response)
    next(chunks), next(chunks)
    kiosk.logout()
    names = [parse(c)[0] for c in chunks]
    assert names[-1] == "logout"
    response.close()


def test_a_slow_page_loses_the_oldest_events_not_the_newest(web, kiosk):  # noqa: F811
    from kiosk.web.live import QUEUE_SIZE

    log_in(web)
    response = web.get("/api/events", buffered=False)
    chunks = frames(response)
    next(chunks), next(chunks)                                   # retry, snapshot: the page now lags behind
    for n in range(QUEUE_SIZE + 50):
        kiosk.events.publish("status", {"n": n})
    first = parse(next(chunks))
    assert first == ("status", {"n": 50})                        # the 50 oldest were dropped
    last = None
    for _ in range(QUEUE_SIZE - 1):
        last = parse(next(chunks))
    assert last == ("status", {"n": QUEUE_SIZE + 49})            # the newest arrived
    response.close()
