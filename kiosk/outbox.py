"""The outbox: every attendance mark goes to the university API through here, and none is lost.

- Coalesced per (classId, userId): the newest mark wins, except that a camera mark (51-100) never
  replaces a queued mark by hand (105 / -1), see :func:`kiosk.spool.kept`. Every mark gets a sequence
  number, so a delivery of an older mark that fails (or succeeds) while a newer one was queued never
  replaces it.
- One worker thread delivers with the tokens of the mark's teacher: ``client_for(teacher)`` returns
  that teacher's client, or None while they are not logged in (their marks wait).
- Failures, as design.md says: connection errors, timeouts, 5xx and 429 (the client already honoured
  a short ``Retry-After``) are retried with exponential backoff and jitter, capped at ``backoff_cap``
  seconds; a 401 is refreshed inside the client and reaches us as :class:`LoginRequired` only when the
  teacher must log in again: their marks wait for :meth:`Outbox.teacher_logged_in`; any other refusal
  goes to the dead-letter list (shown on the page, never retried unless the teacher asks:
  :meth:`Outbox.retry_dead_letter`).
- :meth:`Outbox.stop` flushes for at most ``flush_timeout`` seconds and writes what remains to
  ``<spool_dir>/outbox-spool.json`` (userId, classId, confidence, teacher, created: no secrets), the only
  file the kiosk writes. From then on the file holds every undelivered mark: a delivery still in flight
  that ends later removes only its own mark, and a mark submitted after ``stop()`` is written at once.
  :meth:`Outbox.load_spool` reads it back at start; a spooled mark is delivered when its teacher logs
  in, then removed from the file (the file goes when it is empty).

Example::

    outbox = Outbox(settings.state_dir, client_for=kiosk.client_for, events=bus)
    outbox.load_spool()
    outbox.start()
    outbox.submit(Mark(46703, "00019880", 87, "teacher", time.time()))
    ...
    outbox.stop()        # at most 5 s of flushing, then the spool
"""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from kiosk import spool
from kiosk.errors import KioskError, LoginRequired, MalformedResponse, SpoolError, UpstreamRejected
from kiosk.events import EventBus
from kiosk.spool import Mark

__all__ = ["DeadLetter", "Mark", "Outbox"]

log = logging.getLogger(__name__)
RETRYABLE_STATUSES = frozenset({408, 425, 429})  # refusals that mean "later", should a client pass them on
ABSENT_RECHECK_S = 5.0  # how often client_for() is asked again for a teacher who is not logged in
LOGIN_RECHECK_S = 30.0  # ... and for a teacher whose tokens were refused (teacher_logged_in() is quicker)
STOP_JOIN_S = 1.0  # how long stop() waits at most for a delivery in flight after flushing (within its budget)
STOP_JOIN_MIN_S = 0.05  # ... and at least, so an idle worker ends cleanly even when the flush used the budget


def backoff_delay(failures: int, base: float, cap: float, rng: random.Random) -> float:
    """Seconds to wait after ``failures`` (>= 1) failures in a row: ``base * 2**(failures-1)`` capped at
    ``cap``, of which a random half is jitter (so many kiosks do not retry in step)."""
    ceiling = min(cap, base * 2 ** min(failures - 1, 30))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


class AttendanceClient(Protocol):
    """What the outbox needs of :class:`kiosk.wiut.client.WiutClient`."""

    def set_attendance(self, class_id: int, user_id: str, confidence: int) -> None: ...


@dataclasses.dataclass(frozen=True, repr=False)
class DeadLetter:
    """A mark the API refused (``status`` is the HTTP status, None when refused before sending)."""

    mark: Mark
    status: int | None
    reason: str
    at: float  # wall-clock seconds since the epoch

    def to_json(self) -> dict[str, Any]:
        return {**spool.mark_to_json(self.mark), "status": self.status, "reason": self.reason, "at": self.at}


@dataclasses.dataclass
class _Entry:
    mark: Mark
    seq: int
    spooled: bool = False  # the spool file holds this key (loaded from it, or written by stop())


class Outbox:
    """Delivery of marks with retry, coalescing and a spool; thread-safe; a context manager (start/stop).

    ``clock`` (monotonic seconds) schedules retries; ``wall`` (epoch seconds) dates dead letters;
    ``rng`` draws the jitter. Flush and stop timeouts are real seconds of waiting.
    """

    def __init__(self, spool_dir: str | Path, *, client_for: Callable[[str], AttendanceClient | None] | None = None,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time,
                 rng: random.Random | None = None, events: EventBus | None = None,
                 backoff_base: float = 1.0, backoff_cap: float = 60.0):
        self.spool_path = Path(spool_dir) / spool.SPOOL_NAME
        self._client_for = client_for
        self._clock, self._wall = clock, wall
        self._rng = rng or random.Random()
        self._events = events
        self._base, self._cap = backoff_base, backoff_cap
        self._cond = threading.Condition()
        self._entries: dict[tuple[int, str], _Entry] = {}
        self._dead: dict[tuple[int, str], DeadLetter] = {}
        self._seq = 0
        self._failures = 0  # consecutive "upstream unavailable" failures
        self._gate_until = 0.0  # no delivery before this (clock) while the upstream is down
        self._blocked: dict[str, float] = {}  # teacher -> clock time to ask client_for() again
        self._login_needed: set[str] = set()
        self._last_error: str | None = None
        self._spool_loaded = False
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._spool_written = False  # stop() wrote the spool: it must hold every undelivered mark from now on
        self._busy = False  # a delivery is in flight
        self._health_lock = threading.Lock()
        self._health_listeners: list[Callable[[bool], None]] = []
        self._last_health = True

    # --- what the rest of the kiosk calls -----------------------------------------------------
    def submit(self, mark: Mark) -> int | None:
        """Queue ``mark``, replacing a queued mark of the same (classId, userId); returns its sequence number.

        None when the mark is dropped: a camera mark never replaces a queued mark by hand (105 / -1).
        After :meth:`stop` the mark is written to the spool at once (a failure to write is reported, not raised).
        """
        with self._cond:
            old = self._entries.get(mark.key)
            if old is not None and spool.kept(old.mark, mark) is not mark:
                return None
            self._seq += 1
            seq = self._seq
            self._entries.pop(mark.key, None)
            # a key still in the spool file stays marked, so the file is rewritten once it is settled
            self._entries[mark.key] = _Entry(mark, seq, spooled=bool(old and old.spooled))
            self._dead.pop(mark.key, None)
            if self._spool_written:  # stopped: the worker will not send it, the next run will
                try:
                    self._save()
                except SpoolError as exc:  # the caller may be the camera thread: report, do not raise
                    log.warning("Outbox: %s", exc)
            self._cond.notify_all()
        self._publish()
        return seq

    def pending(self) -> list[Mark]:
        """Marks not yet delivered (including one in flight), oldest first."""
        with self._cond:
            return [e.mark for e in self._entries.values()]

    def pending_for(self, class_id: int, user_id: str) -> Mark | None:
        """The undelivered mark of one student in one class, or None."""
        with self._cond:
            entry = self._entries.get((class_id, user_id))
            return entry.mark if entry else None

    def dead_letters(self, *, teacher: str | None = None) -> list[DeadLetter]:
        """Marks the API refused, oldest first; they stay until a newer mark or :meth:`retry_dead_letter`.

        ``teacher`` (a username) keeps only the marks sent with that teacher's tokens; None keeps all.
        """
        with self._cond:
            return [d for d in self._dead.values() if teacher is None or d.mark.teacher == teacher]

    def retry_dead_letter(self, class_id: int, user_id: str, *, teacher: str | None = None) -> bool:
        """Queue a refused mark again (the teacher asked to); False when there is no such dead letter, or
        when ``teacher`` is given and the mark is another teacher's."""
        with self._cond:
            letter = self._dead.get((class_id, user_id))
            if letter is None or (teacher is not None and letter.mark.teacher != teacher):
                return False
            del self._dead[(class_id, user_id)]
        self.submit(letter.mark)  # outside the lock: submit() publishes, which takes the health lock first
        return True

    def teacher_logged_in(self, teacher: str) -> None:
        """Tell the worker that ``teacher`` has tokens again: their waiting marks are tried at once."""
        with self._cond:
            self._blocked.pop(teacher, None)
            self._login_needed.discard(teacher)
            self._cond.notify_all()
        self._publish()

    def wake(self) -> None:
        """Make the worker look at the queue now (after an injected clock moved on)."""
        with self._cond:
            self._cond.notify_all()

    @property
    def healthy(self) -> bool:
        """False while the API is failing or a teacher with waiting marks must log in again."""
        with self._cond:
            return self._healthy()

    def _healthy(self) -> bool:
        waiting = {e.mark.teacher for e in self._entries.values()}
        return self._failures == 0 and not (self._login_needed & waiting)

    def on_health_change(self, listener: Callable[[bool], None]) -> None:
        """Call ``listener(healthy)`` from now on whenever :attr:`healthy` changes (e.g. to drive the error
        LED); it is called at once when the outbox is unhealthy already. It must return quickly."""
        with self._health_lock:
            self._health_listeners.append(listener)
            healthy = self.healthy
            if healthy != self._last_health:  # a change not published yet: everyone hears it now
                self._last_health = healthy
                self._tell(self._health_listeners, healthy)
            elif not healthy:
                self._tell([listener], healthy)

    @staticmethod
    def _tell(listeners: list[Callable[[bool], None]], healthy: bool) -> None:
        """Call each listener (caller holds the health lock); a failing one is reported and skipped."""
        for listener in listeners:
            try:
                listener(healthy)
            except Exception as exc:  # a broken listener must not stop deliveries
                log.warning("Outbox: a health listener failed (%s).", type(exc).__name__)

    def status(self, *, teacher: str | None = None) -> dict[str, Any]:
        """The outbox as the page shows it (also the payload of the ``outbox`` event).

        ``teacher`` (a username) limits ``loginRequired`` and ``deadLetters`` to that teacher (the other
        teachers' usernames and students stay hidden); None (the event's payload) lists every teacher's.
        """
        with self._cond:
            login = sorted(t for t in self._login_needed if teacher is None or t == teacher)
            return {"pending": len(self._entries), "healthy": self._healthy(),
                    "upstreamDown": self._failures > 0, "loginRequired": login,
                    "retryIn": round(max(0.0, self._gate_until - self._clock()), 1) if self._failures else None,
                    "lastError": self._last_error,
                    "deadLetters": [d.to_json() for d in self.dead_letters(teacher=teacher)]}

    # --- lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the delivery thread (once)."""
        with self._cond:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="outbox", daemon=True)
        self._thread.start()

    def flush(self, timeout: float, teacher: str | None = None) -> bool:
        """Try every waiting mark now and wait up to ``timeout`` seconds for the deliverable ones.

        Marks of teachers who are not logged in are not waited for. ``teacher`` limits the wait to one
        teacher's marks. True when nothing deliverable is left; False on timeout or with no worker.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            self._gate_until = 0.0
            self._blocked.clear()
            self._cond.notify_all()
            while self._outstanding(teacher):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._thread is None or self._stopping:
                    return False
                self._cond.wait(min(remaining, 0.1))
            return True

    def stop(self, flush_timeout: float = 5.0) -> int:
        """Flush for at most ``flush_timeout`` s, stop the worker and spool what remains; returns marks spooled.

        A delivery still in flight after that may end later: it then removes only its own mark from the
        file. Idempotent. Raises :class:`~kiosk.errors.SpoolError` when the spool cannot be written.
        """
        deadline = time.monotonic() + flush_timeout
        if self._thread is not None and not self._stopping:
            self.flush(flush_timeout)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:  # what the flush left of the budget, at most STOP_JOIN_S, at least a moment
            thread.join(max(STOP_JOIN_MIN_S, min(STOP_JOIN_S, deadline - time.monotonic())))
        with self._cond:
            marks = self._save()
            self._spool_written = True
        if marks:
            log.info("Outbox: %d undelivered mark(s) kept in the spool.", len(marks))
        return len(marks)

    close = stop

    def __enter__(self) -> Outbox:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def load_spool(self) -> int:
        """Queue the marks spooled by an earlier run (newer queued marks win, but a camera mark never replaces
        a spooled mark by hand); returns how many were loaded."""
        marks = spool.read(self.spool_path)
        loaded = 0
        with self._cond:
            for mark in marks:
                queued = self._entries.get(mark.key)
                if queued is not None:
                    queued.spooled = True  # the file holds this key: rewrite it once the key is settled
                if queued is None or spool.kept(mark, queued.mark) is mark:
                    self._seq += 1
                    self._entries[mark.key] = _Entry(mark, self._seq, spooled=True)
                    loaded += 1
            self._spool_loaded = True
            self._cond.notify_all()
        if loaded:
            log.info("Outbox: %d mark(s) from the spool wait for their teacher's login.", loaded)
            self._publish()
        return loaded

    # --- the worker ---------------------------------------------------------------------------------
    def _outstanding(self, teacher: str | None) -> bool:
        now = self._clock()
        return self._busy or any(
            (teacher is None or e.mark.teacher == teacher) and self._blocked.get(e.mark.teacher, now) <= now
            for e in self._entries.values())

    def _next_job(self) -> tuple[int, Mark] | None:
        """The next mark to send (and its sequence number), or None after waiting (at most 1 s) for a change."""
        with self._cond:
            now = self._clock()
            if now < self._gate_until:
                wait = self._gate_until - now
            else:
                for entry in self._entries.values():
                    if self._blocked.get(entry.mark.teacher, now) <= now:
                        self._busy = True
                        return entry.seq, entry.mark
                wait = min((u - now for u in self._blocked.values() if u > now), default=1.0)
            if not self._stopping:
                self._cond.wait(min(max(wait, 0.01), 1.0))
            return None

    def _run(self) -> None:
        while not self._stopping:
            job = self._next_job()
            if job is not None:
                try:
                    self._deliver(*job)
                finally:
                    with self._cond:
                        self._busy = False
                        self._cond.notify_all()
                self._publish()

    def _deliver(self, seq: int, mark: Mark) -> None:
        try:
            client = self._client_for(mark.teacher) if self._client_for else None
        except Exception as exc:  # the owner's callback failed: treat the teacher as absent, keep the worker alive
            log.warning("Outbox: client_for failed (%s).", type(exc).__name__)
            client = None
        if client is None:
            self._block(mark.teacher, ABSENT_RECHECK_S, login=False)
            return
        try:
            client.set_attendance(mark.class_id, mark.user_id, mark.confidence)
        except LoginRequired as exc:
            self._block(mark.teacher, LOGIN_RECHECK_S, login=True, error=str(exc))
        except UpstreamRejected as exc:  # the client turns every 401 into LoginRequired (after one refresh)
            if exc.status in RETRYABLE_STATUSES:
                self._retry(exc)
            else:
                self._dead_letter(seq, mark, exc.status, str(exc))
        # reached when the token refresh inside set_attendance meets a captive portal (a 2xx that is not the
        # API's): not delivered, try again later. It is a ValueError too, so it must come before the next line.
        except MalformedResponse as exc:
            self._retry(exc)
        except ValueError as exc:  # refused before sending (the client checks the values)
            self._dead_letter(seq, mark, None, str(exc))
        except Exception as exc:  # UpstreamUnavailable, or any failure: keep the mark and try again later
            self._retry(exc)
        else:
            self._delivered(seq, mark)

    def _block(self, teacher: str, seconds: float, *, login: bool, error: str | None = None) -> None:
        with self._cond:
            self._blocked[teacher] = self._clock() + seconds
            newly = login and teacher not in self._login_needed
            if login:
                self._login_needed.add(teacher)
                self._last_error = error
        if newly:
            log.warning("Outbox: a teacher must log in again before their marks can be sent.")

    def _retry(self, exc: Exception) -> None:
        with self._cond:
            self._failures += 1
            delay = backoff_delay(self._failures, self._base, self._cap, self._rng)
            retry_after = getattr(exc, "retry_after", None)
            if isinstance(retry_after, int | float):
                delay = max(delay, min(float(retry_after), 10 * self._cap))
            self._gate_until = self._clock() + delay
            # our errors' messages are plain sentences without IDs; anything else is named by its type only
            self._last_error = str(exc) if isinstance(exc, KioskError) else f"Delivery failed ({type(exc).__name__})."
            waiting = len(self._entries)
        log.warning("Outbox: delivery failed (%s); %d mark(s) waiting, next try in %.0f s.",
                    type(exc).__name__, waiting, delay)

    def _save(self) -> list[Mark]:
        """Write every queued mark to the spool (with the file's marks when it was never loaded) and return
        them; the caller holds the lock. Raises :class:`SpoolError`."""
        marks = [e.mark for e in self._entries.values()]
        if not self._spool_loaded:
            marks = spool.merge(spool.read(self.spool_path), marks)
        if marks:
            spool.write(self.spool_path, marks)
        elif self._spool_loaded:
            spool.remove(self.spool_path)
        for entry in self._entries.values():
            entry.spooled = True
        return marks

    def _settle(self, seq: int, mark: Mark) -> None:
        """Drop the entry of ``mark`` unless a newer mark replaced it; keep the spool file in step.

        The file loses only the marks of this student that ``mark`` supersedes: whatever else it holds
        (marks spooled by :meth:`stop` while this delivery was in flight, marks never loaded) stays.
        """
        entry = self._entries.get(mark.key)
        if entry is None or entry.seq != seq:
            return
        del self._entries[mark.key]
        if not entry.spooled:
            return
        try:
            held = spool.read(self.spool_path)
            rest = [m for m in held if m.key != mark.key or spool.kept(m, mark) is not mark]
            if len(rest) == len(held):  # the file holds nothing of this student (or cannot be read): leave it
                return
            if rest:
                spool.write(self.spool_path, rest)
            else:
                spool.remove(self.spool_path)
        except SpoolError as exc:  # the file still holds the mark: it is sent again after a restart
            log.warning("Outbox: %s", exc)

    def _delivered(self, seq: int, mark: Mark) -> None:
        with self._cond:
            if self._failures:
                log.info("Outbox: the attendance API accepts marks again.")
            self._failures, self._gate_until = 0, 0.0
            self._login_needed.discard(mark.teacher)
            self._last_error = None
            self._settle(seq, mark)

    def _dead_letter(self, seq: int, mark: Mark, status: int | None, reason: str) -> None:
        with self._cond:
            self._failures, self._gate_until = 0, 0.0
            entry = self._entries.get(mark.key)
            if entry is not None and entry.seq == seq:
                self._dead[mark.key] = DeadLetter(mark, status, reason, self._wall())
            self._settle(seq, mark)
        log.warning("Outbox: the attendance API refused a mark (%s); it is listed on the page.", status)

    def _publish(self) -> None:
        """Tell the page (an ``outbox`` event) and the health listeners (on a change only)."""
        with self._health_lock:  # one publisher at a time, so listeners see changes in order
            status = self.status()
            if self._events is not None:
                self._events.publish("outbox", status)
            if status["healthy"] == self._last_health:
                return
            self._last_health = status["healthy"]
            self._tell(self._health_listeners, status["healthy"])
