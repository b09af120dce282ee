"""The running class: its roster, the marks, and the rules of ``wiut-api.md`` ("Attendance confidence").

- A recognition above 50 % is posted once, with its calibrated % (51-100), through the outbox.
- A mark by hand (105 present, -1 absent) waits out an undo window, then goes to the outbox; the
  camera never overrides it, also after a restart (the roster then says 105 / -1).
- The roster is re-read every ``roster_refresh_seconds`` to pick up marks made elsewhere. An answer
  never erases a mark of ours that was not yet delivered when the request was sent, and a mark still
  waiting in the outbox (also one spooled by an earlier run) is shown over the roster's answer.
- :data:`DAYS`, :func:`slot_window`, :func:`slot_end` and :func:`class_end` are the one place the
  timetable's day and time rules live (:mod:`kiosk.timetable` uses them too).

The owner calls :meth:`ClassSession.tick` regularly (about once a second); it sends due marks,
refreshes the roster and ends the class at ``ends_at`` (the slot's end plus the grace minutes; see
:func:`slot_end` and :func:`class_end`). Thread-safe: the camera thread and the web threads share it.

Example::

    session = ClassSession(client, outbox, teacher="teacher", lesson_guid=guid, class_id=46703,
                           embedding_method="mobilefacenet-v1", ends_at=None, events=bus)
    session.load_roster()
    session.on_recognised("00019880", 87)      # "marked"
    session.mark_manual("00019881", present=False); session.undo("00019881")
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from kiosk import roster
from kiosk.errors import NoClassRunning, NotOnRoster, UpstreamError
from kiosk.events import EventBus
from kiosk.outbox import Mark, Outbox
from kiosk.roster import MANUAL_ABSENT, MANUAL_PRESENT, StudentState
from kiosk.wiut.models import RosterStudent, parse_time_range

log = logging.getLogger(__name__)
DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
"""Lower-case day names in ``datetime.weekday()`` order, as the timetable's ``dayOfWeek`` spells them."""


class RosterClient(Protocol):
    """What a class needs of :class:`kiosk.wiut.client.WiutClient`."""

    def students(self, lesson_guid: str, class_id: int, embedding_type: str) -> list[RosterStudent]: ...


def slot_window(slot_time_text: str, day: str, tz: dt.tzinfo,
                now: dt.datetime) -> tuple[dt.datetime, dt.datetime] | None:
    """Today's start and end of a slot (``"09:00 - 11:00"`` on ``"Monday"``, times in ``tz``), tz-aware.

    None when the text is not a time range or ``day`` (empty = any day) is not today in ``tz``; the
    window may be over already or still ahead. ``now`` is tz-aware.
    """
    span = parse_time_range(slot_time_text)
    local = now.astimezone(tz)
    if span is None or (day.strip() and day.strip().lower() != DAYS[local.weekday()]):
        return None
    today = local.date()
    return dt.datetime.combine(today, span[0], tzinfo=tz), dt.datetime.combine(today, span[1], tzinfo=tz)


def slot_end(slot_time_text: str, day: str, tz: dt.tzinfo, now: dt.datetime) -> dt.datetime | None:
    """Today's end of a slot (see :func:`slot_window`), if it is still ahead.

    None when the text is not a time range, ``day`` (empty = any day) is not today in ``tz``, or the
    slot has already ended: the class then runs for the maximum length. ``now`` is tz-aware.
    """
    window = slot_window(slot_time_text, day, tz, now)
    return window[1] if window is not None and now < window[1] else None


def class_end(started: dt.datetime, end_of_slot: dt.datetime | None, *, grace_minutes: int,
              max_minutes: int) -> dt.datetime:
    """When a class started at ``started`` ends: the slot's end plus the grace, or after the maximum length."""
    if end_of_slot is None:
        return started + dt.timedelta(minutes=max_minutes)
    return end_of_slot + dt.timedelta(minutes=grace_minutes)


def _same_vectors(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    if a is None or b is None:
        return a is b
    return a.shape == b.shape and bool(np.array_equal(a, b))


@dataclasses.dataclass(frozen=True)
class _Asked:
    """What was not yet on the server when a roster request was sent: the answer may not show it."""

    submits: int  # how many marks this session had sent to the outbox by then
    queued: dict[str, Mark]  # user_id -> the mark of this class then in the outbox (any session's, spooled too)


@dataclasses.dataclass
class _PendingManual:
    confidence: int  # 105 or -1
    due: float  # monotonic seconds when it goes to the outbox
    previous: tuple[int, str | None]  # (confidence, source) to restore on undo


class ClassSession:
    """One running class. ``clock`` returns a tz-aware now; ``monotonic`` seconds time the undo and refresh."""

    def __init__(self, client: RosterClient, outbox: Outbox, *, teacher: str, lesson_guid: str, class_id: int,
                 embedding_method: str, embedding_dim: int = 192, ends_at: dt.datetime | None = None,
                 max_minutes: int = 180, undo_seconds: float = 5.0, roster_refresh_seconds: float = 60.0,
                 clock: Callable[[], dt.datetime] | None = None, monotonic: Callable[[], float] = time.monotonic,
                 events: EventBus | None = None, decoder: roster.Decoder = roster.decode):
        self.teacher, self.lesson_guid, self.class_id = teacher, lesson_guid, class_id
        self._client, self._outbox, self._events = client, outbox, events
        self._method, self._dim, self._decoder = embedding_method, embedding_dim, decoder
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self._monotonic = monotonic
        self._undo_s, self._refresh_s = undo_seconds, roster_refresh_seconds
        self.started_at = self._clock()
        self.ends_at = ends_at or self.started_at + dt.timedelta(minutes=max_minutes)
        self._lock = threading.RLock()
        self._students: dict[str, StudentState] = {}
        self._pending: dict[str, _PendingManual] = {}
        self._local_vectors: set[str] = set()  # enrolled during this class: kept over roster refreshes
        self._submits = 0  # marks sent to the outbox by this session
        self._marked: dict[str, int] = {}  # user_id -> self._submits when our last mark went to the outbox
        self._last_refresh = self._monotonic()
        self._ended = False
        self._loaded = False
        self.vectors_version = 0
        """Grows whenever :meth:`gallery` would answer differently (rebuild the matcher's gallery then)."""
        self.last_error: str | None = None
        """The last roster refresh failure (a plain sentence), None after a good refresh."""

    @property
    def ended(self) -> bool:
        return self._ended

    # --- roster -----------------------------------------------------------------------------------
    def _fetch(self) -> dict[str, StudentState]:
        rows = self._client.students(self.lesson_guid, self.class_id, self._method)
        return {r.user_id: roster.from_roster(r, method=self._method, dim=self._dim, decoder=self._decoder)
                for r in rows}

    def load_roster(self) -> int:
        """Read the roster (StudentsByLesson) and announce the class; returns the number of students.

        Raises the client's errors (:class:`~kiosk.errors.UpstreamError` and subclasses).
        """
        if self._loaded:
            self.refresh_roster()
            return len(self._students)
        with self._lock:
            asked = self._ask()
        fresh = self._fetch()
        with self._lock:
            for state in fresh.values():
                self._show_queued(state, asked)
            self._students = fresh
            self._loaded = True
            self._last_refresh = self._monotonic()
            self.vectors_version += 1
            self._publish_session("started")
        return len(fresh)

    def refresh_roster(self) -> None:
        """Re-read the roster: a mark made elsewhere replaces ours unless ours is still waiting to be sent.

        A manual mark from the server also supersedes a camera mark of ours that it may not have seen.
        """
        with self._lock:
            asked = self._ask()
        fresh = self._fetch()
        with self._lock:
            self._last_refresh = self._monotonic()
            self.last_error = None
            for user_id in list(self._students):
                if user_id not in fresh and not self._waiting(user_id, asked):
                    self.vectors_version += self._students.pop(user_id).vectors is not None
            for user_id, new in fresh.items():
                self._merge(user_id, new, asked)

    def _ask(self) -> _Asked:
        """Note, just before a roster request, which marks the answer may not show (caller holds the lock)."""
        return _Asked(self._submits, {m.user_id: m for m in self._outbox.pending() if m.class_id == self.class_id})

    def _waiting(self, user_id: str, asked: _Asked) -> bool:
        """True while a mark of ours may be missing from a roster answer requested at ``asked``: it was not
        delivered when the request was sent, was made after, or is still undelivered now."""
        return (user_id in self._pending or user_id in asked.queued
                or self._marked.get(user_id, -1) >= asked.submits
                or self._outbox.pending_for(self.class_id, user_id) is not None)

    def _show_queued(self, state: StudentState, asked: _Asked) -> None:
        """Show our mark for ``state`` that the roster's answer may not hold yet: the one in the outbox now,
        else the one there when the roster was asked for (delivered meanwhile). Nothing when neither.

        A camera mark of ours never overrides a manual one the roster holds: the roster's is sent instead.
        """
        queued = self._outbox.pending_for(self.class_id, state.user_id) or asked.queued.get(state.user_id)
        kind = roster.mark_kind(queued.confidence) if queued is not None else None
        if queued is None or kind is None:
            return
        if kind == "camera" and state.kind == "manual":
            self._submit(state.user_id, state.confidence)
        else:
            state.set_mark(queued.confidence, kind)

    def _merge(self, user_id: str, new: StudentState, asked: _Asked) -> None:
        old = self._students.get(user_id)
        if old is None:
            self._show_queued(new, asked)
            self._students[user_id] = new
            self.vectors_version += new.vectors is not None
            self._publish_student(new)
            return
        before = old.to_json()
        old.full_name, old.is_attended, old.server_confidence = new.full_name, new.is_attended, new.server_confidence
        if user_id not in self._local_vectors and not _same_vectors(old.vectors, new.vectors):
            old.set_vectors(new.vectors, new.not_enrolled_reason)
            self.vectors_version += 1
        elif user_id not in self._local_vectors:
            old.not_enrolled_reason = new.not_enrolled_reason
        if user_id in self._pending:
            pass  # the teacher's latest action, still in its undo window
        elif old.kind == "camera" and old.source == "camera" and new.kind == "manual":
            old.set_mark(new.confidence, "server")  # a camera mark of ours never overrides a manual one
            if self._waiting(user_id, asked):
                self._submit(user_id, new.confidence)  # ours may land after it (queued or in flight): send it again
        elif not self._waiting(user_id, asked) and new.confidence != old.confidence:
            old.set_mark(new.confidence, "server")
        if old.to_json() != before:
            self._publish_student(old)

    def gallery(self) -> dict[str, np.ndarray]:
        """``{user_id: (k, dim) vectors}`` of the enrolled roster students, for the matcher."""
        with self._lock:
            return {uid: s.vectors for uid, s in self._students.items() if s.vectors is not None}

    def set_student_vectors(self, user_id: str, vectors: np.ndarray) -> None:
        """Use ``vectors`` ``(k, dim)`` for ``user_id`` at once (enrolled during the class)."""
        array = roster.check_vectors(vectors, self._dim)
        with self._lock:
            state = self._student(user_id)
            state.set_vectors(array, None)
            self._local_vectors.add(user_id)
            self.vectors_version += 1
            self._publish_student(state)

    def student(self, user_id: str) -> StudentState | None:
        """The state of one student (a live object: read it, do not change it), or None."""
        with self._lock:
            return self._students.get(user_id)

    def _student(self, user_id: str) -> StudentState:
        state = self._students.get(user_id)
        if state is None:
            raise NotOnRoster("The student is not on the roster of the running class.")
        return state

    # --- marks ------------------------------------------------------------------------------------
    def on_recognised(self, user_id: str, confidence: int) -> str:
        """Apply a recognition: ``"marked"``, ``"already"``, ``"manual"``, ``"not_on_roster"`` or ``"ignored"``.

        ``confidence`` is the calibrated % (above 50 to count; above 100 is sent as 100).
        """
        value = min(int(confidence), 100)
        if value <= 50:
            return "ignored"
        with self._lock:
            self._send_due()
            state = self._students.get(user_id)
            if self._ended:
                return "ignored"
            if state is None:
                return "not_on_roster"
            if user_id in self._pending or state.kind == "manual":
                return "manual"
            if state.kind == "camera":
                return "already"
            state.set_mark(value, "camera")
            self._submit(user_id, state.confidence)
            self._publish_student(state)
            return "marked"

    def mark_manual(self, user_id: str, present: bool) -> dict[str, Any]:
        """Mark by hand (105 / -1); it is sent after the undo window. Returns the student's row.

        Raises :class:`NotOnRoster`, or :class:`NoClassRunning` after the class ended.
        """
        with self._lock:
            self._send_due()
            if self._ended:
                raise NoClassRunning("The class has ended; marks can no longer be changed here.")
            state = self._student(user_id)
            confidence = MANUAL_PRESENT if present else MANUAL_ABSENT
            earlier = self._pending.get(user_id)
            previous = earlier.previous if earlier else (state.confidence, state.source)
            state.set_mark(confidence, "manual")
            self._pending[user_id] = _PendingManual(confidence, self._monotonic() + self._undo_s, previous)
            self._send_due()
            self._publish_student(state)
            return state.to_json(self._undo_left(user_id))

    def undo(self, user_id: str) -> bool:
        """Take back a manual mark still in its undo window (nothing is sent); False when too late or none."""
        with self._lock:
            self._send_due()
            pending = self._pending.pop(user_id, None)
            if pending is None:
                return False
            state = self._student(user_id)
            state.set_mark(*pending.previous)
            self._publish_student(state)
            return True

    def mark_remaining_absent(self) -> int:
        """Mark every student without a mark absent by hand (-1, through the undo window); returns how many."""
        with self._lock:
            unmarked = [uid for uid, s in self._students.items() if s.kind is None and uid not in self._pending]
            for user_id in unmarked:
                self.mark_manual(user_id, present=False)
            return len(unmarked)

    def _submit(self, user_id: str, confidence: int) -> None:
        self._marked[user_id] = self._submits
        self._submits += 1
        wall = self._clock().timestamp()
        self._outbox.submit(Mark(self.class_id, user_id, confidence, self.teacher, wall))

    def _send_due(self, everything: bool = False) -> None:
        now = self._monotonic()
        for user_id, pending in list(self._pending.items()):
            if everything or pending.due <= now:
                del self._pending[user_id]
                self._submit(user_id, pending.confidence)
                if user_id in self._students:
                    self._publish_student(self._students[user_id])

    def _undo_left(self, user_id: str) -> float | None:
        pending = self._pending.get(user_id)
        return None if pending is None else max(0.0, pending.due - self._monotonic())

    # --- time -------------------------------------------------------------------------------------
    def tick(self) -> bool:
        """Send due manual marks, refresh the roster when it is time, end the class at ``ends_at``; True once ended."""
        with self._lock:
            if self._ended:
                return True
            self._send_due()
            refresh = self._monotonic() - self._last_refresh >= self._refresh_s
        if refresh:
            try:
                self.refresh_roster()
            except UpstreamError as exc:
                with self._lock:
                    self._last_refresh = self._monotonic()
                    self.last_error = str(exc)
                log.warning("Class: the roster could not be refreshed (%s).", type(exc).__name__)
        if self._clock() >= self.ends_at:
            self.end()
        return self._ended

    def end(self) -> None:
        """End the class: manual marks in their undo window are sent now; idempotent."""
        with self._lock:
            if self._ended:
                return
            self._send_due(everything=True)
            self._ended = True
            self._publish_session("ended")

    # --- what the page sees -------------------------------------------------------------------
    def _counts(self) -> dict[str, int]:
        states = self._students.values()
        return {"present": sum(s.present is True for s in states), "enrolled": sum(s.enrolled for s in states),
                "total": len(self._students)}

    def snapshot(self) -> dict[str, Any]:
        """The JSON of ``GET /api/session``; students sorted by full name."""
        with self._lock:
            self._send_due()
            rows = [s.to_json(self._undo_left(uid)) for uid, s in self._students.items()]
            return {"classId": self.class_id, "lessonGuid": self.lesson_guid, "teacher": self.teacher,
                    "startedAt": self.started_at.isoformat(), "endsAt": self.ends_at.isoformat(),
                    "ended": self._ended, "counts": self._counts(),
                    "students": sorted(rows, key=lambda r: (r["fullName"].casefold(), r["userId"]))}

    def _publish_student(self, state: StudentState) -> None:
        if self._events is not None:
            self._events.publish("student", state.to_json(self._undo_left(state.user_id)))

    def _publish_session(self, what: str) -> None:
        if self._events is not None:
            self._events.publish("session", {"state": what, "classId": self.class_id, "lessonGuid": self.lesson_guid,
                                             "endsAt": self.ends_at.isoformat(), "counts": self._counts()})
