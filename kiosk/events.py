"""Live events for the teacher page (Server-Sent Events), published by the parts that change state.

A publisher never waits: every subscriber has its own bounded queue, and when a slow page lets its
queue fill up, the OLDEST event is dropped and counted (the page re-reads the full state with
``GET /api/session`` when it sees a gap in the ids). Closing the bus ends every subscription, so
streams end on shutdown.

Example::

    bus = EventBus()
    with bus.subscribe(maxsize=100) as sub:
        bus.publish("student", {"userId": "00000001", "present": True})
        event = sub.get(timeout=1.0)      # Event(id=1, name="student", data={...}) or None
        text = event.sse()                # "id: 1\\nevent: student\\ndata: {...}\\n\\n"
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import json
import threading
import time
from typing import Any


@dataclasses.dataclass(frozen=True)
class Event:
    """One published event; ``id`` increases by one per event on its bus, starting at 1."""

    id: int
    name: str
    data: dict[str, Any]

    def sse(self) -> str:
        """The event in the text/event-stream wire format (one frame, ending in a blank line)."""
        payload = json.dumps(self.data, separators=(",", ":"), ensure_ascii=False)
        return f"id: {self.id}\nevent: {self.name}\ndata: {payload}\n\n"


class Subscription:
    """A bounded queue of events for one reader; made by :meth:`EventBus.subscribe`."""

    def __init__(self, bus: EventBus, maxsize: int):
        if maxsize < 1:
            raise ValueError("A subscription needs room for at least one event.")
        self._bus = bus
        self._queue: collections.deque[Event] = collections.deque()
        self._maxsize = maxsize
        self._cond = threading.Condition()
        self._closed = False
        self.dropped = 0
        """Events dropped because this reader was too slow (oldest first)."""

    @property
    def closed(self) -> bool:
        return self._closed

    def _put(self, event: Event) -> None:
        with self._cond:
            if self._closed:
                return
            if len(self._queue) >= self._maxsize:
                self._queue.popleft()
                self.dropped += 1
            self._queue.append(event)
            self._cond.notify()

    def get(self, timeout: float | None = None) -> Event | None:
        """The next event, waiting at most ``timeout`` seconds (None = until one comes or the end).

        Returns None on timeout, and once the subscription (or its bus) is closed and the events
        already queued have been read: check :attr:`closed` to tell the two apart.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._queue and not self._closed:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)
            return self._queue.popleft() if self._queue else None

    def close(self) -> None:
        """Stop receiving events and wake a reader waiting in :meth:`get`; safe to call twice."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._bus._forget(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    """Fan-out of events to subscribers; thread-safe, :meth:`publish` never blocks on a reader."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._subs: list[Subscription] = []
        self._closed = False

    @property
    def subscriber_count(self) -> int:
        """Open subscriptions (each open page stream holds one)."""
        with self._lock:
            return len(self._subs)

    @property
    def closed(self) -> bool:
        return self._closed

    def publish(self, name: str, data: dict[str, Any]) -> Event:
        """Send ``data`` (JSON-serialisable; not to be changed afterwards) to every subscriber.

        After :meth:`close` the event still gets an id but reaches nobody.
        """
        with self._lock:
            event = Event(next(self._ids), name, data)
            subs = list(self._subs)
        for sub in subs:
            sub._put(event)
        return event

    def subscribe(self, maxsize: int = 100) -> Subscription:
        """A new subscription holding at most ``maxsize`` unread events; already closed after :meth:`close`."""
        sub = Subscription(self, maxsize)
        with self._lock:
            if not self._closed:
                self._subs.append(sub)
                return sub
        sub.close()
        return sub

    def _forget(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)

    def close(self) -> None:
        """End every subscription (their readers get None); idempotent."""
        with self._lock:
            self._closed = True
            subs, self._subs = self._subs, []
        for sub in subs:
            sub.close()

    def __enter__(self) -> EventBus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
